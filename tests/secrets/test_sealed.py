"""The sealed-value format and the master key: AES-256-GCM bound to a secret's name and key."""

from __future__ import annotations

import base64
import json
import pickle
from pathlib import Path

import pytest

from stigmer_backend.backends.encryption import (
    FORMAT_VERSION,
    MasterKey,
    MasterKeyError,
    SealedValueError,
    key_id_of,
    reseal,
    seal,
    unseal,
)

FIXTURES = Path(__file__).parent / "fixtures"
VALUE = "sk-live-4f9a1c0e7b2d8a6f"


@pytest.fixture
def key() -> MasterKey:
    return MasterKey.generate("a test key")


def test_round_trip_binds_header_and_hides_the_value(key: MasterKey) -> None:
    sealed = seal(key, "OPENAI_KEY", VALUE, version=1)
    assert unseal(key, "OPENAI_KEY", sealed, version=1) == VALUE
    assert sealed[0] == FORMAT_VERSION
    assert key_id_of(sealed) == key.key_id
    assert VALUE.encode() not in sealed
    assert len(sealed) == 1 + 8 + 12 + len(VALUE) + 16


def test_every_seal_uses_a_fresh_nonce(key: MasterKey) -> None:
    sealed = [seal(key, "A", VALUE, version=1) for _ in range(50)]
    nonces = {value[9:21] for value in sealed}
    assert len(nonces) == 50
    assert len(set(sealed)) == 50
    assert {unseal(key, "A", value, version=1) for value in sealed} == {VALUE}


def test_every_flipped_bit_is_detected(key: MasterKey) -> None:
    sealed = seal(key, "A", "s3cret", version=1)
    for bit in range(len(sealed) * 8):
        tampered = bytearray(sealed)
        tampered[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(SealedValueError) as caught:
            unseal(key, "A", bytes(tampered), version=1)
        assert caught.value.secret == "A"
        assert "s3cret" not in str(caught.value)


def test_flipped_bits_are_reported_by_the_part_they_hit(key: MasterKey) -> None:
    sealed = bytearray(seal(key, "A", VALUE, version=1))

    def opened_with(index: int) -> str:
        tampered = bytearray(sealed)
        tampered[index] ^= 0x04
        with pytest.raises(SealedValueError) as caught:
            unseal(key, "A", bytes(tampered), version=1)
        return str(caught.value)

    assert "format version 6, which this Stigmer does not know" in opened_with(0)
    assert "sealed under another master key" in opened_with(3)
    assert "failed its integrity check" in opened_with(15)  # nonce
    assert "failed its integrity check" in opened_with(len(sealed) - 1)  # tag


def test_a_ciphertext_moved_to_another_secret_fails(key: MasterKey) -> None:
    sealed = seal(key, "GH_TOKEN", VALUE, version=1)
    with pytest.raises(SealedValueError, match="secret 'DB_PASSWORD' failed its integrity check") as caught:
        unseal(key, "DB_PASSWORD", sealed, version=1)
    assert "belongs to another secret" in str(caught.value)


def test_a_wrong_key_fails_naming_both_keys_and_the_place(key: MasterKey) -> None:
    other = MasterKey.generate("/home/me/.stigmer/master.key")
    sealed = seal(key, "A", VALUE, version=1)
    with pytest.raises(SealedValueError) as caught:
        unseal(other, "A", sealed, version=1)
    message = str(caught.value)
    assert f"sealed under another master key (key id {key.key_id.hex()})" in message
    assert f"not the master key in /home/me/.stigmer/master.key (key id {other.key_id.hex()})" in message


def test_a_forged_key_id_still_fails_authentication(key: MasterKey) -> None:
    other = MasterKey.generate("other")
    sealed = seal(key, "A", VALUE, version=1)
    forged = sealed[:1] + other.key_id + sealed[9:]
    with pytest.raises(SealedValueError, match="failed its integrity check"):
        unseal(other, "A", forged, version=1)


@pytest.mark.parametrize("sealed", [b"", b"\x01", b"\x01" + b"\x00" * 35])
def test_empty_and_truncated_ciphertexts_fail(key: MasterKey, sealed: bytes) -> None:
    with pytest.raises(SealedValueError, match=r"empty|truncated"):
        unseal(key, "A", sealed, version=1)


def test_reseal_moves_a_value_to_a_new_key(key: MasterKey) -> None:
    new = MasterKey.generate("new")
    moved = reseal(key, new, "A", seal(key, "A", VALUE, version=1), version=1)
    assert unseal(new, "A", moved, version=1) == VALUE
    with pytest.raises(SealedValueError, match="another master key"):
        unseal(key, "A", moved, version=1)


def test_values_sealed_in_format_1_stay_readable() -> None:
    fixture = json.loads((FIXTURES / "sealed-format-1.json").read_text())
    key = MasterKey.from_text(fixture["master_key"], "the fixture")
    assert key.key_id.hex() == fixture["key_id"]
    assert key.check.value.hex() == fixture["key_check"]
    assert len(fixture["secrets"]) == 3
    for secret in fixture["secrets"]:
        sealed = base64.b64decode(secret["sealed"])
        assert sealed[0] == 1
        # Format 1 binds no version: any version number opens it.
        assert unseal(key, secret["name"], sealed, version=7) == secret["value"]


def test_the_key_never_shows_itself(key: MasterKey) -> None:
    text = key.to_text()
    for shown in (repr(key), str(key), f"{key}", repr([key])):
        assert text not in shown
        assert key.key_id.hex() in shown
    with pytest.raises(TypeError):
        pickle.dumps(key)


def test_key_text_round_trips_and_derivations_differ(key: MasterKey) -> None:
    again = MasterKey.from_text(key.to_text() + "\n", "elsewhere")
    assert again.same_key(key)
    assert again.key_id == key.key_id
    assert again.matches(key.check)
    assert not MasterKey.generate("x").matches(key.check)
    assert len(base64.b64decode(key.to_text())) == 32
    assert key.check.value[:8] != key.key_id


@pytest.mark.parametrize(
    "text",
    [
        "not base64 at all!",
        base64.b64encode(b"\x01" * 31).decode(),
        base64.b64encode(b"\x01" * 33).decode(),
        (b"\x01" * 32).hex(),
    ],
)
def test_malformed_key_text_is_refused_without_echoing_it(text: str) -> None:
    with pytest.raises(MasterKeyError) as caught:
        MasterKey.from_text(text, "the STIGMER_MASTER_KEY environment variable")
    message = str(caught.value)
    assert message.startswith("the master key in the STIGMER_MASTER_KEY environment variable is malformed")
    assert "base64 encoding of 32 bytes" in message
    assert text not in message


def test_an_older_value_of_the_same_secret_fails(key: MasterKey) -> None:
    """Format 2 binds ``Secret.version``: a backup's ciphertext put back into the row is refused."""
    old = seal(key, "A", "old-value", version=1)
    assert unseal(key, "A", old, version=1) == "old-value"
    with pytest.raises(SealedValueError, match="failed its integrity check") as caught:
        unseal(key, "A", old, version=2)
    assert "older value of this one" in str(caught.value)


@pytest.mark.parametrize("stored", ["AQID", 12345], ids=["text", "integer"])
def test_a_ciphertext_that_is_not_bytes_is_an_altered_database(key: MasterKey, stored: object) -> None:
    with pytest.raises(SealedValueError, match=r"not bytes \(the database was altered\)"):
        unseal(key, "A", stored, version=1)  # type: ignore[arg-type]
    assert key_id_of(stored) is None  # type: ignore[arg-type]
