"""Converters between the contract's betterproto2 messages and Google's protobuf (upb) messages.

betterproto2 stays the Python API; upb does the bytes. Each message class
gets its converter on first use, derived from its descriptor and
betterproto2's field metadata, so a field added to the proto is converted
without anything written here.

To upb, a message becomes the keyword arguments of the upb constructor,
nested dicts included: one C call builds the whole tree. Struct, Value and
ListValue are built as upb objects instead, because the upb constructor reads
a dict given for them as JSON. A message carrying unknown fields (sent by a
newer peer) is built as an object too, with its unknown bytes merged in, so
they go on as Google's runtime would send them.

From upb, only the fields that are set are visited (``ListFields``) and the
betterproto2 class is called with them. A message whose bytes carry unknown
fields is left to betterproto2's own parser, which keeps them per message.
"""

from __future__ import annotations

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
        # Registered before it is built, so recursive messages (Struct -> Value -> Struct) resolve lazily.
        _encoders[cls] = lambda message: _encoders[cls](message)
        encoder = _encoders[cls] = _build_encoder(cls)
    return encoder


def _build_encoder(cls: type) -> Encode:
    descriptor: Descriptor = cls.DESCRIPTOR
    as_object = descriptor.full_name in _JSON_SHAPED
    google = google_class(cls)
    fields: list[tuple[str, str, bool, Encode | None]] = []
    for attribute, field, field_meta, value_field, value_meta, value_class in _fields(cls):
        # Fields with presence (message, oneof member, optional) default to None; others are skipped when falsy.
        has_presence = bool(field_meta.optional or field_meta.group is not None or field.message_type is not None)
        single = _single_encoder(value_class, value_meta, value_field)
        if single is not None and field_meta.map_meta is not None:
            single = _each_value(single)
        elif single is not None and field_meta.repeated:
            single = _each_item(single)
        fields.append((attribute, field.name, has_presence, single))

    def encode(message: Any) -> Any:
        arguments = {}
        for attribute, name, has_presence, convert in fields:
            value = getattr(message, attribute)
            if value is None or (not has_presence and not value):
                continue
            arguments[name] = value if convert is None else convert(value)
        unknown = message._unknown_fields
        if not (as_object or unknown):
            return arguments
        built = google(**arguments)
        if unknown:
            built.MergeFromString(unknown)
        return built

    return encode


def _single_encoder(value_class: type, field_meta: Any, field: FieldDescriptor) -> Encode | None:
    if field.message_type is None:
        return None  # scalars and enums (IntEnum) go to upb as they are
    wrapper = field_meta.unwrap() if field_meta.unwrap is not None else None
    if wrapper is None:
        return _encoder(value_class)
    # betterproto2's own conversion of the Python value, with a dict in place of its message.
    if field.message_type.full_name == "google.protobuf.Timestamp":
        from_datetime = wrapper.from_datetime.__func__
        return lambda value: from_datetime(_seconds_nanos, value)
    if field.message_type.full_name == "google.protobuf.Duration":
        from_timedelta = wrapper.from_timedelta.__func__
        return lambda value: from_timedelta(_seconds_nanos, value)
    wrapped_encoder = _encoder(wrapper)
    return lambda value: wrapped_encoder(wrapper.from_wrapped(value))


def _seconds_nanos(seconds: int, nanos: int) -> dict[str, int]:
    return {"seconds": seconds, "nanos": nanos}


def _each_value(convert: Encode) -> Encode:
    return lambda mapping: {key: convert(value) for key, value in mapping.items()}


def _each_item(convert: Encode) -> Encode:
    return lambda values: [convert(value) for value in values]


# -- upb -> betterproto2 --------------------------------------------------------------------------


def _decoder(cls: type) -> Decode:
    decoder = _decoders.get(cls)
    if decoder is None:
        _decoders[cls] = lambda google: _decoders[cls](google)
        decoder = _decoders[cls] = _build_decoder(cls)
    return decoder


def _build_decoder(cls: type) -> Decode:
    by_field: dict[Any, tuple[str, Decode | None]] = {}
    for attribute, field, field_meta, value_field, value_meta, value_class in _fields(cls):
        single = _single_decoder(value_class, value_meta, value_field)
        if field_meta.map_meta is not None:
            single = dict if single is None else _each_value(single)
        elif field_meta.repeated:
            single = list if single is None else _each_item(single)
        by_field[field] = (attribute, single)

    def decode(google: Any) -> Any:
        arguments = {}
        for field, value in google.ListFields():
            attribute, convert = by_field[field]
            arguments[attribute] = value if convert is None else convert(value)
        return cls(**arguments)

    return decode


def _single_decoder(value_class: type, field_meta: Any, field: FieldDescriptor) -> Decode | None:
    if field.enum_type is not None:
        return value_class  # the betterproto2 enum keeps unknown values, as its parser does
    if field.message_type is None:
        return None
    wrapper = field_meta.unwrap() if field_meta.unwrap is not None else None
    if wrapper is None:
        return _decoder(value_class)
    # betterproto2's own conversion, reading seconds and nanos from the upb message.
    if field.message_type.full_name == "google.protobuf.Timestamp":
        return wrapper.to_datetime
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
