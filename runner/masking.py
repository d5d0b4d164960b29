"""Keeping secret values out of everything a runner prints, logs or reports.

A runner holds the values of its execution's secrets (``GetExecutionContext``)
and must not let any of them reach a status message, an output, an error, a
log line or the terminal. Everything it emits goes through a ``Masker`` first,
which replaces each value, and the encodings a value commonly takes on its
way out, with ``***``:

- the raw value;
- base64, standard and URL-safe, with and without padding, also when the
  value sits inside a larger encoded string (``Basic base64(user:token)``):
  each of the three byte alignments is covered;
- URL encoding (``quote``, ``quote_plus``, and ``%XX`` of every byte; escapes
  in upper or lower case);
- hexadecimal of the UTF-8 bytes, in any case (a model quoting the key it was
  given "in hex");
- UTF-16 (little and big endian) as its bytes read as text, in hexadecimal
  and in base64 (PowerShell's ``-EncodedCommand`` form);
- JSON string escaping (ASCII-only and not, with ``\\/`` for ``/`` too), and
  ``\\uXXXX`` escapes of every character, in any case;
- each line of a multi-line value (a PEM key, a JSON credentials file), in
  all of the above, skipping lines too short to be secret on their own.

Values held by a runner should be wrapped in ``SecretValue``, whose ``repr``
and ``str`` never show the value, so a stray ``print`` or f-string in a log
call shows ``SecretValue(***)`` instead.
"""

from __future__ import annotations

import base64
import dataclasses
import hmac
import json
import logging
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from urllib.parse import quote, quote_plus

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["MASK", "Masker", "MaskingFilter", "SecretValue"]

Message = TypeVar("Message", bound="DataclassInstance")  # a generated message: a dataclass

MASK = "***"
MIN_LINE_CHARS = 4
"""Lines of a multi-line value shorter than this (``{``, ``}``, ``-----``) are not masked on their own."""
_MIN_ALIGNED_BYTES = 6
"""A value shorter than this is matched in base64 text only when encoded on its own (fewer aligned
groups would be too short to tell apart from other base64 text)."""


class SecretValue:
    """A secret's value, which does not show itself.

    :param value: the plain value.

    ``reveal()`` returns it, at the moment of use; ``repr``/``str``/``format``
    give ``SecretValue(***)``; it cannot be pickled; equality is checked in
    constant time.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if isinstance(value, SecretValue):
            value = value.reveal()
        if not isinstance(value, str):
            raise TypeError("a SecretValue holds text")
        self._value = value

    def reveal(self) -> str:
        """The plain value: pass it straight to the call that needs it, never to output."""
        return self._value

    def __repr__(self) -> str:
        return f"SecretValue({MASK})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretValue):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((SecretValue, len(self._value)))

    def __reduce__(self) -> NoReturn:
        raise TypeError("a SecretValue cannot be pickled: it must stay in memory")


def _fragments(value: str) -> list[str]:
    """The value, and each line of it long enough to stand for it."""
    fragments = [value]
    lines = [line.strip() for line in re.split(r"\r\n|\r|\n", value)]
    if len(lines) > 1:
        fragments += [line for line in lines if len(line) >= MIN_LINE_CHARS]
    return fragments


def _base64_forms(data: bytes) -> set[str]:
    forms: set[str] = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(data).decode("ascii")
        forms |= {whole, whole.rstrip("=")}
        if len(data) < _MIN_ALIGNED_BYTES:
            continue
        # Inside a larger encoded string the value starts at one of three byte
        # alignments; from the first group boundary on, its whole 3-byte groups
        # encode the same whatever surrounds them.
        for skip in (0, 1, 2):
            aligned = data[skip:]
            aligned = aligned[: len(aligned) - len(aligned) % 3]
            if aligned:
                forms.add(encode(aligned).decode("ascii"))
    return forms


_CASELESS = "\x00caseless:"
"""Prefix of a form that matches in any letter case (hexadecimal digits); never part of a real form."""


def _pattern(form: str) -> str:
    """``form`` as a regular expression; percent-escapes match in either case (``%2F``, ``%2f``)."""
    if form.startswith(_CASELESS):
        return f"(?i:{re.escape(form[len(_CASELESS) :])})"
    return re.sub(r"%([0-9A-F]{2})", r"%(?i:\1)", re.escape(form))


def _length(form: str) -> int:
    return len(form) - len(_CASELESS) if form.startswith(_CASELESS) else len(form)


def _encodings(fragment: str) -> set[str]:
    data = fragment.encode()
    forms = {fragment}
    forms |= _base64_forms(data)
    forms |= {quote(fragment, safe=""), quote(fragment), quote_plus(fragment)}
    forms.add("".join(f"%{byte:02X}" for byte in data))  # every byte escaped, letters or not
    forms.add(_CASELESS + data.hex())
    for ascii_only in (True, False):
        escaped = json.dumps(fragment, ensure_ascii=ascii_only)[1:-1]
        forms |= {escaped, escaped.replace("/", "\\/")}
    utf16 = fragment.encode("utf-16-be")
    units = [utf16[i : i + 2].hex() for i in range(0, len(utf16), 2)]
    forms.add(_CASELESS + "".join(f"\\u{unit}" for unit in units))  # every character as \uXXXX
    for wide in (fragment.encode("utf-16-le"), utf16):
        forms.add(wide.decode("latin-1"))  # UTF-16 bytes read as one byte per character
        forms.add(_CASELESS + wide.hex())
        forms |= _base64_forms(wide)
    return {form for form in forms if _length(form)}


class Masker:
    """Replaces secret values, and their common encodings, with ``***``.

    :param values: the values to hide (``str`` or ``SecretValue``), typically
        ``GetExecutionContextResponse.secrets.values()``.

    The longest matching form wins at each position, so a value that
    contains another is hidden whole.
    """

    def __init__(self, values: Iterable[str | SecretValue]) -> None:
        forms: set[str] = set()
        for value in values:
            plain = value.reveal() if isinstance(value, SecretValue) else value
            if plain:
                for fragment in _fragments(plain):
                    forms |= _encodings(fragment)
        ordered = sorted(forms, key=lambda form: (-_length(form), form))
        self._pattern = re.compile("|".join(map(_pattern, ordered))) if ordered else None
        self._longest = len(ordered[0]) if ordered else 0

    @classmethod
    def from_context(cls, context: Any) -> Masker:
        """A masker for the secrets of a ``GetExecutionContextResponse``."""
        return cls(context.secrets.values())

    def __repr__(self) -> str:
        return "Masker(***)"

    def mask(self, text: str) -> str:
        """``text`` with every secret value and encoding replaced by ``***``."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def mask_settled(self, text: str) -> tuple[str, str]:
        """Masks the head of a stream's text that no later text can change; returns it and the raw rest.

        For text that arrives in pieces (a streamed model answer): a value
        split across two pieces must still be masked, so the last
        ``longest form - 1`` characters, and any match reaching into them,
        are held back until more text (or the end, then ``mask`` the rest)
        decides them. Joining every head and the masked last rest gives
        exactly ``mask`` of the whole text.
        """
        if self._pattern is None:
            return text, ""
        undecided = max(0, len(text) - (self._longest - 1))
        pieces: list[str] = []
        done = 0
        for match in self._pattern.finditer(text):
            if match.start() >= undecided:
                break
            # Every form that could start here fits in ``text``: this match is final.
            pieces += [text[done : match.start()], MASK]
            done = match.end()
        cut = max(done, undecided)
        pieces.append(text[done:cut])
        return "".join(pieces), text[cut:]

    def mask_data(self, data: Any) -> Any:
        """A copy of nested dicts, lists and tuples with every string (keys too) masked."""
        if isinstance(data, str):
            return self.mask(data)
        if isinstance(data, Mapping):
            return {self.mask_data(key): self.mask_data(value) for key, value in data.items()}
        if isinstance(data, list | tuple):
            return type(data)(self.mask_data(item) for item in data)
        return data

    def mask_message(self, message: Message) -> Message:
        """A copy of a generated message (a status update, an output, an error) with every string masked.

        Walks every field: strings, nested messages (``Struct`` values
        included), repeated fields and maps, whose keys are masked too.
        """
        changes = {field.name: self._mask_field(getattr(message, field.name)) for field in dataclasses.fields(message)}
        return dataclasses.replace(message, **changes)

    def _mask_field(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.mask(value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return self.mask_message(value)
        if isinstance(value, list):
            return [self._mask_field(item) for item in value]
        if isinstance(value, dict):
            return {self._mask_field(key): self._mask_field(item) for key, item in value.items()}
        return value


class MaskingFilter(logging.Filter):
    """A logging filter that masks each record's final message (arguments merged in).

    :param masker: the masker of the running execution.

    Attach it to the handlers that write a runner's logs:
    ``handler.addFilter(MaskingFilter(masker))``.
    """

    def __init__(self, masker: Masker) -> None:
        super().__init__()
        self._masker = masker

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._masker.mask(record.getMessage())
        record.args = None
        if record.stack_info:
            record.stack_info = self._masker.mask(record.stack_info)
        if record.exc_info:
            # The formatted traceback would carry exception messages unmasked.
            record.exc_text = self._masker.mask(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True
