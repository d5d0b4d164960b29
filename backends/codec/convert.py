"""Converters between the contract's betterproto2 messages and Google's protobuf (upb) messages.

betterproto2 stays the Python API; upb does the bytes. Each message class
gets its two converters on first use, written from its descriptor and
betterproto2's field metadata (one line per field, compiled), so a field
added to the proto is converted without anything written here.

To upb, a message becomes the keyword arguments of the upb constructor,
nested dicts included: one C call builds the whole tree. Struct, Value and
ListValue are built as upb objects instead, because the upb constructor reads
a dict given for them as JSON. A message carrying unknown fields (sent by a
newer peer) is built as an object too, with its unknown bytes merged in, so
they go on as Google's runtime would send them.

From upb, every field is read (a field with presence only if it is set) and
passed to the betterproto2 class. Bytes with unknown fields never get here:
``ContractCodec`` leaves them to betterproto2's parser, which keeps them.
"""

from __future__ import annotations

import datetime
import keyword
from collections.abc import Callable
from typing import Any

import betterproto2
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor

__all__ = ["from_google", "google_class", "to_google"]

# The upb constructor takes a dict for these as a JSON value, not as their fields.
_JSON_SHAPED = frozenset({"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"})

Encode = Callable[[Any], Any]
Decode = Callable[[Any], Any]

_encoders: dict[type, Callable[[Any], Any]] = {}
_decoders: dict[type, Callable[[Any], Any]] = {}
_google_classes: dict[type, type] = {}


def google_class(cls: type[betterproto2.Message]) -> type:
    """The upb message class for the betterproto2 class ``cls`` (same descriptor)."""
    google = _google_classes.get(cls)
    if google is None:
        google = _google_classes[cls] = message_factory.GetMessageClass(cls.DESCRIPTOR)
    return google


def to_google(message: betterproto2.Message) -> Any:
    """``message`` as a upb message with the same fields (and unknown fields)."""
    cls = type(message)
    arguments = _encoder(cls)(message)
    if isinstance(arguments, dict):
        return google_class(cls)(**arguments)
    return arguments


def from_google(google: Any, cls: type[betterproto2.Message]) -> betterproto2.Message:
    """The upb message ``google`` as an instance of the betterproto2 class ``cls``."""
    return _decoder(cls)(google)


# -- betterproto2 -> upb --------------------------------------------------------------------------


def _encoder(cls: type) -> Encode:
    encoder = _encoders.get(cls)
    if encoder is None:
        encoder = _encoders[cls] = _built(_encoders, cls, _build_encoder)
    return encoder


def _built(table: dict[type, Callable[[Any], Any]], cls: type, build: Callable[[type], Callable[[Any], Any]]):
    """``build(cls)``, with a forwarder in ``table`` meanwhile: a message that contains itself
    (Struct -> Value -> Struct) calls its converter before it is built."""
    table[cls] = lambda message: table[cls](message)
    try:
        return build(cls)
    except BaseException:
        del table[cls]
        raise


def _build_encoder(cls: type) -> Encode:
    google = google_class(cls)
    lines = ["def encode(message):", "    arguments = {}"]
    namespace: dict[str, Any] = {"google": google}
    for number, (attribute, field, field_meta, value_field, value_meta, value_class) in enumerate(_fields(cls)):
        single = _single_encoder(value_class, value_meta, value_field)
        if single is not None and field_meta.map_meta is not None:
            single = _each_value(single)
        elif single is not None and field_meta.repeated:
            single = _each_item(single)
        value = "value"
        if single is not None:
            namespace[f"convert_{number}"] = single
            value = f"convert_{number}(value)"
        lines.append(f"    value = message.{attribute}")
        # Fields with presence (message, oneof member, optional) are None when unset; the others
        # are skipped at their default, which is falsy, as betterproto2 skips them.
        if _has_presence(field, field_meta):
            lines.append("    if value is not None:")
        else:
            lines.append("    if value:")
        lines.append(f"        arguments[{field.name!r}] = {value}")
    lines += ["    unknown = message._unknown_fields"]
    if cls.DESCRIPTOR.full_name in _JSON_SHAPED:
        lines += ["    built = google(**arguments)"]
    else:
        lines += ["    if not unknown:", "        return arguments", "    built = google(**arguments)"]
    lines += ["    if unknown:", "        built.MergeFromString(unknown)", "    return built"]
    return _compiled(cls, "encode", lines, namespace)


def _has_presence(field: FieldDescriptor, field_meta: Any) -> bool:
    if field_meta.repeated or field_meta.map_meta is not None:
        return False
    return bool(field_meta.optional or field_meta.group is not None or field.message_type is not None)


def _compiled(cls: type, name: str, lines: list[str], namespace: dict[str, Any]) -> Callable[[Any], Any]:
    """The function ``name`` written in ``lines``: one straight line of code per field, no loop
    over field tables at run time (the technique ``dataclasses`` uses for ``__init__``)."""
    source = "\n".join(lines)
    exec(compile(source, f"<stigmer_backend.backends.codec {name} {cls.__qualname__}>", "exec"), namespace)
    return namespace[name]


def _single_encoder(value_class: type, field_meta: Any, field: FieldDescriptor) -> Encode | None:
    if field.message_type is None:
        return None  # scalars and enums (IntEnum) go to upb as they are
    wrapper = field_meta.unwrap() if field_meta.unwrap is not None else None
    if wrapper is None:
        return _encoder(value_class)
    if field.message_type.full_name == "google.protobuf.Timestamp":
        return _timestamp_arguments
    # betterproto2's own conversion of the Python value, with a dict in place of its message.
    if field.message_type.full_name == "google.protobuf.Duration":
        from_timedelta = wrapper.from_timedelta.__func__
        return lambda value: from_timedelta(_seconds_nanos, value)
    wrapped_encoder = _encoder(wrapper)
    return lambda value: wrapped_encoder(wrapper.from_wrapped(value))


def _seconds_nanos(seconds: int, nanos: int) -> dict[str, int]:
    return {"seconds": seconds, "nanos": nanos}


# Timestamps are most of an execution's fields: converted here with betterproto2's arithmetic
# (``Timestamp.from_datetime`` / ``to_datetime``: whole microseconds counted from the epoch) in
# fewer steps; the encoding tests hold the two to the same results.
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MICROSECOND = datetime.timedelta(microseconds=1)


def _timestamp_arguments(value: datetime.datetime) -> dict[str, int]:
    if value.tzinfo is None:
        raise ValueError("datetime must be timezone aware")
    seconds, microseconds = divmod((value - _EPOCH) // _MICROSECOND, 1_000_000)
    return {"seconds": seconds, "nanos": microseconds * 1000}


def _timestamp_value(google: Any) -> datetime.datetime:
    return _EPOCH + datetime.timedelta(0, google.seconds, google.nanos // 1000)


def _each_value(convert: Encode) -> Encode:
    return lambda mapping: {key: convert(value) for key, value in mapping.items()}


def _each_item(convert: Encode) -> Encode:
    return lambda values: [convert(value) for value in values]


# -- upb -> betterproto2 --------------------------------------------------------------------------


def _decoder(cls: type) -> Decode:
    decoder = _decoders.get(cls)
    if decoder is None:
        decoder = _decoders[cls] = _built(_decoders, cls, _build_decoder)
    return decoder


def _build_decoder(cls: type) -> Decode:
    lines = ["def decode(google):", "    return cls("]
    namespace: dict[str, Any] = {"cls": cls}
    for number, (attribute, field, field_meta, value_field, value_meta, value_class) in enumerate(_fields(cls)):
        single = _single_decoder(value_class, value_meta, value_field)
        read = f"google.{field.name}" if not keyword.iskeyword(field.name) else f"getattr(google, {field.name!r})"
        convert = f"convert_{number}"
        namespace[convert] = single
        if field_meta.map_meta is not None:
            value = f"dict({read})" if single is None else f"{{key: {convert}(item) for key, item in {read}.items()}}"
        elif field_meta.repeated:
            value = f"list({read})" if single is None else f"[{convert}(item) for item in {read}]"
        else:
            value = read if single is None else f"{convert}({read})"
            if _has_presence(field, field_meta):
                value = f"{value} if google.HasField({field.name!r}) else None"
        lines.append(f"        {attribute}={value},")
    lines.append("    )")
    return _compiled(cls, "decode", lines, namespace)


def _single_decoder(value_class: type, field_meta: Any, field: FieldDescriptor) -> Decode | None:
    if field.enum_type is not None:
        members = {member.value: member for member in value_class}
        # The enum's own call for values it does not know: it keeps them, as betterproto2's parser does.
        return lambda number: members[number] if number in members else value_class(number)
    if field.message_type is None:
        return None
    wrapper = field_meta.unwrap() if field_meta.unwrap is not None else None
    if wrapper is None:
        return _decoder(value_class)
    if field.message_type.full_name == "google.protobuf.Timestamp":
        return _timestamp_value
    # betterproto2's own conversion, reading seconds and nanos from the upb message.
    if field.message_type.full_name == "google.protobuf.Duration":
        return wrapper.to_timedelta
    wrapped_decoder = _decoder(wrapper)
    return lambda google: wrapped_decoder(google).to_wrapped()


def _fields(cls: type) -> list[tuple[str, FieldDescriptor, Any, FieldDescriptor, Any, type]]:
    """Each field of ``cls``: attribute name, descriptor and betterproto2 metadata, then the same
    for its values (those of the map entry's ``value`` for a map) and the class of its values."""
    meta = cls._betterproto
    descriptor: Descriptor = cls.DESCRIPTOR
    fields = []
    for attribute, field_meta in meta.meta_by_field_name.items():
        field = descriptor.fields_by_number[field_meta.number]
        if field_meta.map_meta is not None:
            value_field = field.message_type.fields_by_name["value"]
            value_class = meta.cls_by_field[f"{attribute}.value"]
            fields.append((attribute, field, field_meta, value_field, field_meta.map_meta[1], value_class))
        else:
            fields.append((attribute, field, field_meta, field, field_meta, meta.cls_by_field[attribute]))
    return fields
