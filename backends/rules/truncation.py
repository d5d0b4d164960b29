"""Fitting free text into the contract's byte limits without breaking a character.

The proto limits text fields in UTF-8 bytes, not characters: an error
message of 16,000 ``é`` is 32,000 bytes and is refused. A runner that
reports what went wrong must shorten it by bytes, on a character boundary,
or its report is rejected and the execution stays RUNNING until its lease
ends. The limits come from ``validation``, their single source.
"""

from __future__ import annotations

from .validation import MAX_ERROR_MESSAGE_BYTES, MAX_OUTPUT_TEXT_BYTES, MAX_STATUS_MESSAGE_BYTES

__all__ = ["ELLIPSIS", "fit_error_message", "fit_output_text", "fit_status_message", "truncate_utf8"]

ELLIPSIS = "…"
"""Appended to shortened text, so a reader knows it was cut."""


def truncate_utf8(text: str, max_bytes: int) -> str:
    """``text`` if it fits in ``max_bytes`` UTF-8 bytes, else its longest prefix that does, plus ``…``.

    The cut falls between characters, so the result is valid UTF-8 and its
    encoding (ellipsis included) is at most ``max_bytes`` bytes.
    """
    # A lone surrogate cannot be sent as UTF-8: it becomes "?" rather than a rejected report.
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= max_bytes:
        return encoded.decode("utf-8")
    room = max_bytes - len(ELLIPSIS.encode())
    if room <= 0:
        return ""
    # errors="ignore" drops the partial character the byte cut may leave at the end.
    return encoded[:room].decode("utf-8", "ignore") + ELLIPSIS


def fit_error_message(text: str) -> str:
    """``text`` shortened to fit ``ExecutionError.message``."""
    return truncate_utf8(text, MAX_ERROR_MESSAGE_BYTES)


def fit_status_message(text: str) -> str:
    """``text`` shortened to fit ``ExecutionStatus.message`` (and ``UpdateExecutionStatusRequest.message``)."""
    return truncate_utf8(text, MAX_STATUS_MESSAGE_BYTES)


def fit_output_text(text: str) -> str:
    """``text`` shortened to fit ``ExecutionOutput.text``."""
    return truncate_utf8(text, MAX_OUTPUT_TEXT_BYTES)
