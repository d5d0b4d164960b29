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
import enum
import keyword
from collections.abc import Callable
from typing import Any, TypeAlias

import betterproto2
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message as GoogleMessage

from stigmer_backend.gen.google.protobuf import Duration

__all__ = ["from_google", "google_class", "to_google"]

# The upb constructor takes a dict for these as a JSON value, not as their fields.
_JSON_SHAPED = frozenset({"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"})

MessageClass: TypeAlias = type[betterproto2.Message]
# A converter takes a field's value (or a whole message) on one side and returns it for the other:
# any field type of the contract, hence ``Any``.
Encode: TypeAlias = Callable[[Any], Any]
Decode: TypeAlias = Callable[[Any], Any]

_encoders: dict[MessageClass, Encode] = {}
_decoders: dict[MessageClass, Decode] = {}
_google_classes: dict[MessageClass, type[GoogleMessage]] = {}


def _descriptor(cls: MessageClass) -> Descriptor:
    """The generated class's ``DESCRIPTOR``, which betterproto2's base class does not declare."""
    descriptor = getattr(cls, "DESCRIPTOR", None)
    if not isinstance(descriptor, Descriptor):
        raise TypeError(f"{cls.__qualname__} is not a generated message class: it has no DESCRIPTOR")
    return descriptor


def google_class(cls: MessageClass) -> type[GoogleMessage]:
    """The upb message class for the betterproto2 class ``cls`` (same descriptor)."""
    google = _google_classes.get(cls)
    if google is None:
        google = _google_classes[cls] = message_factory.GetMessageClass(_descriptor(cls))
    return google


def to_google(message: betterproto2.Message) -> GoogleMessage:
    """``message`` as a upb message with the same fields (and unknown fields)."""
    cls = type(message)
    arguments = _encoder(cls)(message)
    if isinstance(arguments, dict):
        return google_class(cls)(**arguments)
    assert isinstance(arguments, GoogleMessage)  # built whole: a JSON-shaped type or unknown fields (_build_encoder)
    return arguments


def from_google(google: GoogleMessage, cls: MessageClass) -> betterproto2.Message:
    """The upb message ``google`` as an instance of the betterproto2 class ``cls``."""
    message = _decoder(cls)(google)
    assert isinstance(message, cls)  # what _build_decoder's function returns: cls(...)
    return message


# -- betterproto2 -> upb --------------------------------------------------------------------------


def _encoder(cls: MessageClass) -> Encode:
    encoder = _encoders.get(cls)
    if encoder is None:
        encoder = _encoders[cls] = _built(_encoders, cls, _build_encoder)
    return encoder


def _built(table: dict[MessageClass, Encode], cls: MessageClass, build: Callable[[MessageClass], Encode]) -> Encode:
    """``build(cls)``, with a forwarder in ``table`` meanwhile: a message that contains itself
    (Struct -> Value -> Struct) calls its converter before it is built."""
    table[cls] = lambda message: table[cls](message)
    try:
        return build(cls)
    except BaseException:
        del table[cls]
        raise


def _build_encoder(cls: MessageClass) -> Encode:
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
    if _descriptor(cls).full_name in _JSON_SHAPED:
        lines += ["    built = google(**arguments)"]
    else:
        lines += ["    if not unknown:", "        return arguments", "    built = google(**arguments)"]
    lines += ["    if unknown:", "        built.MergeFromString(unknown)", "    return built"]
    return _compiled(cls, "encode", lines, namespace)


def _has_presence(field: FieldDescriptor, field_meta: betterproto2.FieldMetadata) -> bool:
    if field_meta.repeated or field_meta.map_meta is not None:
        return False
    return bool(field_meta.optional or field_meta.group is not None or field.message_type is not None)


def _compiled(cls: MessageClass, name: str, lines: list[str], namespace: dict[str, Any]) -> Encode:
    """The function ``name`` written in ``lines``: one straight line of code per field, no loop
    over field tables at run time (the technique ``dataclasses`` uses for ``__init__``)."""
    source = "\n".join(lines)
    exec(compile(source, f"<stigmer_backend.backends.codec {name} {cls.__qualname__}>", "exec"), namespace)
    function: Encode = namespace[name]
    return function


def _single_encoder(value_class: type, field_meta: betterproto2.FieldMetadata, field: FieldDescriptor) -> Encode | None:
    if field.message_type is None:
        return None  # scalars and enums (IntEnum) go to upb as they are
    if field_meta.unwrap is None:
        return _encoder(_message_class(value_class))
    if field.message_type.full_name == "google.protobuf.Timestamp":
        return _timestamp_arguments
    if field.message_type.full_name == "google.protobuf.Duration":
        return _duration_arguments
    wrapper = _message_class(field_meta.unwrap())
    wrapped_encoder = _encoder(wrapper)
    from_wrapped = _method(wrapper, "from_wrapped")  # betterproto2's own conversion of the Python value
    return lambda value: wrapped_encoder(from_wrapped(value))


def _message_class(cls: type) -> MessageClass:
    if not issubclass(cls, betterproto2.Message):
        raise TypeError(f"{cls.__qualname__} is not a betterproto2 message class")
    return cls


def _method(cls: type, name: str) -> Callable[..., Any]:
    """``cls``'s method ``name``, which betterproto2's wrapper classes have but do not declare on a common base."""
    method: Callable[..., Any] = getattr(cls, name)
    if not callable(method):
        raise TypeError(f"{cls.__qualname__}.{name} is not callable")
    return method


def _duration_arguments(value: datetime.timedelta) -> dict[str, int]:
    duration = Duration.from_timedelta(value)  # betterproto2's own arithmetic
    return {"seconds": duration.seconds, "nanos": duration.nanos}


# Timestamps are most of an execution's fields: converted here with betterproto2's arithmetic
# (``Timestamp.from_datetime`` / ``to_datetime``: whole microseconds counted from the epoch) in
# fewer steps; the encoding tests hold the two to the same results.
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def _timestamp_arguments(value: datetime.datetime) -> dict[str, int]:
    if value.tzinfo is None:
        raise ValueError("datetime must be timezone aware")
    # A timedelta is normalised to days, seconds in [0, 86400) and microseconds in [0, 10**6): the
    # floor division of whole microseconds by 10**6, without building that integer.
    since = value - _EPOCH
    return {"seconds": since.days * 86_400 + since.seconds, "nanos": since.microseconds * 1000}


def _timestamp_value(google: Any) -> datetime.datetime:
    return _EPOCH + datetime.timedelta(0, google.seconds, google.nanos // 1000)


def _each_value(convert: Encode) -> Encode:
    return lambda mapping: {key: convert(value) for key, value in mapping.items()}


def _each_item(convert: Encode) -> Encode:
    return lambda values: [convert(value) for value in values]


# -- upb -> betterproto2 --------------------------------------------------------------------------


def _decoder(cls: MessageClass) -> Decode:
    decoder = _decoders.get(cls)
    if decoder is None:
        decoder = _decoders[cls] = _built(_decoders, cls, _build_decoder)
    return decoder


def _build_decoder(cls: MessageClass) -> Decode:
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


def _single_decoder(value_class: type, field_meta: betterproto2.FieldMetadata, field: FieldDescriptor) -> Decode | None:
    if field.enum_type is not None:
        if not issubclass(value_class, enum.Enum):
            raise TypeError(f"{value_class.__qualname__} is not an enum class")
        enum_class = value_class
        members = {member.value: member for member in enum_class}
        # The enum's own call for values it does not know: it keeps them, as betterproto2's parser does.
        return lambda number: members[number] if number in members else enum_class(number)
    if field.message_type is None:
        return None
    if field_meta.unwrap is None:
        return _decoder(_message_class(value_class))
    if field.message_type.full_name == "google.protobuf.Timestamp":
        return _timestamp_value
    # betterproto2's own conversion, reading seconds and nanos from the upb message.
    if field.message_type.full_name == "google.protobuf.Duration":
        return Duration.to_timedelta
    wrapped_decoder = _decoder(_message_class(field_meta.unwrap()))
    return lambda google: wrapped_decoder(google).to_wrapped()


def _fields(
    cls: MessageClass,
) -> list[tuple[str, FieldDescriptor, betterproto2.FieldMetadata, FieldDescriptor, betterproto2.FieldMetadata, type]]:
    """Each field of ``cls``: attribute name, descriptor and betterproto2 metadata, then the same
    for its values (those of the map entry's ``value`` for a map) and the class of its values."""
    meta = cls._betterproto  # type: ignore[arg-type]  # betterproto2 types its classproperty for type[Never]
    descriptor = _descriptor(cls)
    fields = []
    for attribute, field_meta in meta.meta_by_field_name.items():
        field = descriptor.fields_by_number[field_meta.number]
        if field_meta.map_meta is not None:
            assert field.message_type is not None  # a map is a repeated entry message
            value_field = field.message_type.fields_by_name["value"]
            value_class = meta.cls_by_field[f"{attribute}.value"]
            fields.append((attribute, field, field_meta, value_field, field_meta.map_meta[1], value_class))
        else:
            fields.append((attribute, field, field_meta, field, field_meta, meta.cls_by_field[attribute]))
    return fields
