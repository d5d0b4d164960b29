"""The masker: secret values and their common encodings never leave a runner."""

from __future__ import annotations

import base64
import json
import logging
import pickle
from urllib.parse import quote, quote_plus

import pytest

from stigmer_backend.gen.google.protobuf import Struct
from stigmer_backend.gen.stigmer.backend import v1 as pb
from stigmer_backend.runner.masking import MASK, Masker, MaskingFilter, SecretValue

TOKEN = "sk-Live/7f3a+9b2c=d4e5"
PEM = "-----BEGIN KEY-----\nMIIBVwIBADANBgkqhkiG9w0B\nAQEFAASCAUEwggE9AgEAAkEA\n-----END KEY-----\n"


def encodings(value: str) -> dict[str, str]:
    raw = value.encode()
    forms = {
        "raw": value,
        "base64": base64.b64encode(raw).decode(),
        "base64 unpadded": base64.b64encode(raw).decode().rstrip("="),
        "base64 url-safe": base64.urlsafe_b64encode(raw).decode(),
        "base64 url-safe unpadded": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "url": quote(value, safe=""),
        "url path": quote(value),
        "url plus": quote_plus(value),
        "url lower-case escapes": quote(value, safe="").replace("%2F", "%2f").replace("%2B", "%2b"),
        "json": json.dumps(value)[1:-1],
        "json escaped slashes": json.dumps(value)[1:-1].replace("/", "\\/"),
        "hex": raw.hex(),
        "hex upper-case": raw.hex().upper(),
        "percent every byte": "".join(f"%{byte:02X}" for byte in raw),
        "percent every byte lower-case": "".join(f"%{byte:02x}" for byte in raw),
        "\\u escape of every character": "".join(f"\\u{ord(char):04x}" for char in value),
        "\\u escape upper-case": "".join(f"\\u{ord(char):04X}" for char in value),
        "utf-16-le as text": value.encode("utf-16-le").decode("latin-1"),
        "utf-16-be as text": value.encode("utf-16-be").decode("latin-1"),
        "utf-16-le hex": value.encode("utf-16-le").hex(),
        "utf-16-le base64": base64.b64encode(value.encode("utf-16-le")).decode(),
    }
    return forms


@pytest.mark.parametrize("form", list(encodings(TOKEN)))
def test_each_encoding_of_a_value_is_masked(form: str) -> None:
    encoded = encodings(TOKEN)[form]
    masked = Masker([TOKEN]).mask(f"before {encoded} after")
    assert masked == f"before {MASK} after"


def test_json_escaping_of_non_ascii_and_control_characters() -> None:
    value = 'pässwörd "q" \\ \t'
    masker = Masker([value])
    for dumped in (json.dumps({"v": value}), json.dumps({"v": value}, ensure_ascii=False)):
        assert masker.mask(dumped) == '{"v": "***"}'


def test_base64_of_a_value_inside_larger_encoded_text_is_masked_at_every_alignment() -> None:
    masker = Masker([TOKEN])
    for prefix in ("", "u:", "us:", "user:"):
        encoded = base64.b64encode(f"{prefix}{TOKEN}".encode()).decode()
        masked = masker.mask(f"Authorization: Basic {encoded}")
        assert MASK in masked
        # What is left around the mask cannot decode to more than a few bytes of the value.
        assert len(masked) - len("Authorization: Basic ") - len(MASK) <= len(base64.b64encode(prefix.encode())) + 8


def test_each_line_of_a_multi_line_value_is_masked() -> None:
    masker = Masker([PEM])
    log = "loaded key\nline: MIIBVwIBADANBgkqhkiG9w0B\nend AQEFAASCAUEwggE9AgEAAkEA."
    masked = masker.mask(log)
    assert "MIIBVwIBADANBgkqhkiG9w0B" not in masked and "AQEFAASCAUEwggE9AgEAAkEA" not in masked
    assert masker.mask(PEM) == MASK
    assert masker.mask(PEM.replace("\n", "\r\n")).count(MASK) == 4  # each line, whatever the line ends
    assert masker.mask(json.dumps({"key": PEM})) == '{"key": "***"}'
    # Short lines (braces of a JSON credentials file) are not masked everywhere on their own.
    assert Masker(['{\n  "private_key": "abcdef123456"\n}']).mask("{} plain") == "{} plain"


def test_the_longest_match_wins_and_several_values_are_masked() -> None:
    masker = Masker(["abcd1234", "abcd1234-extended", SecretValue("other-secret")])
    assert masker.mask("abcd1234-extended and abcd1234 and other-secret.") == "*** and *** and ***."


def test_a_masker_without_values_changes_nothing() -> None:
    assert Masker([]).mask("anything ${.secrets.X}") == "anything ${.secrets.X}"


def test_status_updates_are_masked_in_every_string_field() -> None:
    masker = Masker([TOKEN])
    update = pb.UpdateExecutionStatusRequest(
        execution_id="exe-1",
        phase=pb.ExecutionPhase.FAILED,
        runner_id="runner-1",
        message=f"calling with {TOKEN}",
        output=pb.ExecutionOutput(
            text=base64.b64encode(TOKEN.encode()).decode(),
            data=Struct.from_dict({"echo": {TOKEN: [f"x{TOKEN}x", 1, True]}}),
        ),
        error=pb.ExecutionError(code="HTTP_401", message=quote(TOKEN, safe=""), details={"header": f"Bearer {TOKEN}"}),
    )
    masked = masker.mask_message(update)
    assert masked.execution_id == "exe-1" and masked.phase == pb.ExecutionPhase.FAILED
    assert masked.message == f"calling with {MASK}"
    assert masked.output.text == MASK
    assert masked.output.data.to_dict() == {"echo": {MASK: [f"x{MASK}x", 1, True]}}
    assert masked.error.message == MASK and masked.error.details == {"header": f"Bearer {MASK}"}
    assert update.message == f"calling with {TOKEN}"  # a copy: the original is untouched
    for form in encodings(TOKEN).values():
        assert form not in bytes(masked).decode(errors="replace")
    assert masker.mask_data({"k": [TOKEN, (TOKEN, 2)]}) == {"k": [MASK, (MASK, 2)]}


def test_the_logging_filter_masks_messages_arguments_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("stigmer.test.masking")
    masking = MaskingFilter(Masker([TOKEN]))
    caplog.handler.addFilter(masking)
    try:
        with caplog.at_level(logging.DEBUG, logger="stigmer.test.masking"):
            logger.info("token is %s", TOKEN)
            try:
                raise RuntimeError(f"request failed with {TOKEN}")
            except RuntimeError:
                logger.exception("boom")
    finally:
        caplog.handler.removeFilter(masking)
    assert "token is ***" in caplog.text and "request failed with ***" in caplog.text
    assert TOKEN not in caplog.text


def test_a_secret_value_never_shows_itself() -> None:
    secret = SecretValue(TOKEN)
    percent = "%s" % (secret,)  # noqa: UP031 - logging formats arguments this way
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret!r:>40}", repr({"k": secret}), percent):
        assert TOKEN not in shown
    assert str(secret) == "SecretValue(***)"
    assert secret.reveal() == TOKEN
    assert secret == SecretValue(TOKEN) and secret != SecretValue(TOKEN + "x")
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(TypeError):
        SecretValue(b"bytes")  # type: ignore[arg-type]
    assert TOKEN not in repr(Masker([TOKEN]))
