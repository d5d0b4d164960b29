"""Every message of the contract survives binary and JSON encodings.

Each message is filled with a non-default value in every field (each member
of a oneof in turn), then encoded and decoded by betterproto2 and, as an
independent implementation, by Google's protobuf runtime reading the same
descriptors. The wire codec (``stigmer_backend.backends.codec.ContractCodec``, betterproto2 messages
written and read by upb) must give the same bytes as Google's runtime and the same messages as
betterproto2, both ways.
"""

from __future__ import annotations

import datetime
import inspect
import json

import betterproto2
import pytest
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import FieldDescriptor

import stigmer_backend.gen.stigmer.backend.v1 as pb
from stigmer_backend.backends.codec import ContractCodec
from stigmer_backend.gen.google import protobuf as wkt

MESSAGES = sorted(
    (cls for _, cls in inspect.getmembers(pb, inspect.isclass) if issubclass(cls, betterproto2.Message)),
    key=lambda cls: cls.__name__,
)
STRUCT = {"text": "naïve ✓", "n": 1.5, "flag": True, "none": None, "list": [1, "two", {"three": []}], "empty": {}}
WHEN = datetime.datetime(2026, 11, 25, 14, 30, 15, 123456, tzinfo=datetime.UTC)


def sample(descriptor, oneof_choice: int = 0) -> dict:
    """A proto-JSON dict setting every field of ``descriptor``.

    In each oneof only the member at ``oneof_choice`` (modulo its size) is set.
    """
    values = {}
    for field in descriptor.fields:
        if field.containing_oneof is not None:
            members = field.containing_oneof.fields
            if field is not members[oneof_choice % len(members)]:
                continue
        values[field.json_name] = field_sample(field)
    return values


def field_sample(field: FieldDescriptor):
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return {"k1": "v1 ✓", "k2": ""} if field.message_type.fields_by_name["value"].type == field.TYPE_STRING else {}
    one = single_sample(field)
    return [one, one] if field.is_repeated else one


def single_sample(field: FieldDescriptor):
    if field.type == field.TYPE_STRING:
        return f"{field.name} ✓ ${{.secrets.X}}"
    if field.type in (field.TYPE_INT64, field.TYPE_UINT64, field.TYPE_SINT64):
        return str(2**40 + 7)  # proto JSON spells 64-bit integers as strings
    if field.type in (field.TYPE_INT32, field.TYPE_SINT32, field.TYPE_UINT32):
        return 123
    if field.type == field.TYPE_BOOL:
        return True
    if field.type == field.TYPE_ENUM:
        return field.enum_type.values[-1].name
    if field.type == field.TYPE_MESSAGE:
        name = field.message_type.full_name
        if name == "google.protobuf.Timestamp":
            return "2026-11-25T14:30:15.123456Z"
        if name == "google.protobuf.Duration":
            return "90.500s"
        if name == "google.protobuf.Struct":
            return STRUCT
        return sample(field.message_type)
    raise AssertionError(f"no sample for field type {field.type} of {field.full_name}")


def oneof_variants(cls) -> range:
    sizes = [len(o.fields) for o in cls.DESCRIPTOR.oneofs] or [1]
    return range(max(sizes))


CASES = [pytest.param(cls, choice, id=f"{cls.__name__}-{choice}") for cls in MESSAGES for choice in oneof_variants(cls)]


def test_the_contract_has_the_messages_the_issue_names():
    names = {cls.__name__ for cls in MESSAGES}
    assert {"Execution", "AgentInstance", "Secret", "GetExecutionContextResponse", "WatchExecutionResponse"} <= names
    assert len(MESSAGES) >= 40


@pytest.mark.parametrize(("cls", "choice"), CASES)
def test_binary_round_trip(cls, choice):
    message = cls.from_dict(sample(cls.DESCRIPTOR, choice))
    if cls.DESCRIPTOR.fields:
        assert message != cls(), "the sample must set fields"
    assert cls.parse(bytes(message)) == message


@pytest.mark.parametrize(("cls", "choice"), CASES)
def test_json_round_trip(cls, choice):
    message = cls.from_dict(sample(cls.DESCRIPTOR, choice))
    assert cls.from_json(message.to_json()) == message


@pytest.mark.parametrize(("cls", "choice"), CASES)
def test_googles_runtime_reads_what_betterproto2_writes(cls, choice):
    data = sample(cls.DESCRIPTOR, choice)
    message = cls.from_dict(data)
    google_cls = message_factory.GetMessageClass(cls.DESCRIPTOR)

    from_binary = google_cls.FromString(bytes(message))
    from_json = json_format.Parse(message.to_json(), google_cls())

    assert from_binary == from_json
    assert cls.parse(from_binary.SerializeToString()) == message
    assert json.loads(json_format.MessageToJson(from_binary)) == json.loads(message.to_json())


@pytest.mark.parametrize(("cls", "choice"), CASES)
def test_the_wire_codec_writes_googles_bytes_and_reads_betterproto2s_messages(cls, choice):
    message = cls.from_dict(sample(cls.DESCRIPTOR, choice))
    google = message_factory.GetMessageClass(cls.DESCRIPTOR).FromString(bytes(message))
    codec = ContractCodec()

    written = codec.encode(message, cls)
    # Deterministic: map entries sorted by key, so the bytes are fixed.
    assert written == google.SerializeToString(deterministic=True)
    assert codec.decode(written, cls) == message
    assert codec.decode(google.SerializeToString(), cls) == message


@pytest.mark.parametrize(
    "when",
    [
        WHEN,
        datetime.datetime(1969, 7, 20, 20, 17, 40, 1, tzinfo=datetime.UTC),
        datetime.datetime(1, 1, 1, tzinfo=datetime.UTC),
    ],
)
def test_the_wire_codec_converts_timestamps_and_durations_as_betterproto2_does(when):
    status = pb.ExecutionStatus(
        start_time=when, lease_expire_time=when.astimezone(datetime.timezone(datetime.timedelta(hours=5)))
    )
    request = pb.UpdateExecutionStatusRequest(lease_duration=datetime.timedelta(seconds=-90, microseconds=7))
    codec = ContractCodec()
    for message in (status, request):
        written = codec.encode(message, type(message))
        assert written == bytes(message)
        assert codec.decode(written, type(message)) == type(message).parse(bytes(message))
    # Nanoseconds betterproto2 cannot hold are cut to microseconds the same way.
    raw = bytes(pb.ExecutionStatus(start_time=WHEN))
    google = message_factory.GetMessageClass(pb.ExecutionStatus.DESCRIPTOR).FromString(raw)
    google.start_time.nanos += 999
    assert codec.decode(google.SerializeToString(), pb.ExecutionStatus) == pb.ExecutionStatus.parse(
        google.SerializeToString()
    )


def test_the_wire_codec_keeps_a_newer_peers_unknown_fields_both_ways():
    # Field 99 on the status nested in an execution: something this code does not know.
    status = bytes(pb.ExecutionStatus(phase=pb.ExecutionPhase.RUNNING)) + b"\x98\x06\x07"
    raw = bytes(pb.Execution(id="exe-1", version=2)) + b"\x2a" + bytes([len(status)]) + status
    codec = ContractCodec()

    decoded = codec.decode(raw, pb.Execution)
    assert decoded.status.phase == pb.ExecutionPhase.RUNNING
    assert decoded.status._unknown_fields == b"\x98\x06\x07"
    written = codec.encode(decoded, pb.Execution)
    google = message_factory.GetMessageClass(pb.Execution.DESCRIPTOR)
    assert written == google.FromString(raw).SerializeToString(deterministic=True)


def test_the_wire_codec_leaves_googles_own_messages_to_grpclib():
    from google.protobuf import struct_pb2

    codec = ContractCodec()
    value = struct_pb2.Value(string_value="health and reflection use Google's classes")
    assert codec.decode(codec.encode(value, struct_pb2.Value), struct_pb2.Value) == value
    with pytest.raises(TypeError):
        codec.encode(pb.Execution(), pb.Secret)


def test_timestamps_and_structs_keep_their_values():
    execution = pb.Execution(
        create_time=WHEN,
        input=pb.ExecutionInput(data=wkt.Struct.from_dict(STRUCT)),
    )
    decoded = pb.Execution.parse(bytes(execution))
    assert decoded.create_time == WHEN
    assert decoded.input.data.to_dict() == STRUCT


def test_unknown_enum_values_are_preserved_on_the_wire():
    """A newer peer may send a phase this code does not know; it must not be lost."""
    raw = bytes(pb.ExecutionStatus(phase=pb.ExecutionPhase.RUNNING)).replace(b"\x08\x02", b"\x08\x63")
    assert pb.ExecutionStatus.parse(raw).phase == 99
