"""``MasterKeyPolicy`` over a storage that is not SQLite: what a second adapter would map.

The storage here is a plain in-memory table implementing ``SealedSecretStorage``;
the policy binds, checks and rotates the key exactly as it does for the SQLite
file, which shows the interface is all an adapter needs to provide.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from grpclib import GRPCError
from grpclib.const import Status

from stigmer_backend.backends.encryption import KeyCheck, MasterKeyPolicy, MasterKeySource, SealedSecretStorage


class DictStorage:
    def __init__(self) -> None:
        self.check: KeyCheck | None = None
        self.sealed: dict[str, bytes] = {}

    def key_check(self) -> KeyCheck | None:
        return self.check

    def record_key_check(self, check: KeyCheck) -> None:
        self.check = check

    def clear_key_check(self) -> None:
        self.check = None

    def secret_count(self) -> int:
        return len(self.sealed)

    def sealed_values(self) -> list[tuple[str, int, bytes]]:
        return [(name, 1, sealed) for name, sealed in sorted(self.sealed.items())]

    def replace_sealed_values(self, sealed: Sequence[tuple[str, bytes]]) -> None:
        self.sealed.update(sealed)


def _source(home: Path) -> MasterKeySource:
    home.mkdir(mode=0o700, exist_ok=True)
    return MasterKeySource(home, environ={}, keychain=None)


def test_put_open_rotate_and_status_over_another_storage(tmp_path: Path) -> None:
    storage: SealedSecretStorage = DictStorage()
    policy = MasterKeyPolicy("dict://test", _source(tmp_path))
    storage.sealed["A"] = policy.seal_for_put(storage, "A", "value-a", 1)
    assert storage.key_check() is not None and b"value-a" not in storage.sealed["A"]
    assert policy.open(storage, storage.sealed_values()) == {"A": "value-a"}

    before = policy.status(storage)
    assert (before.database, before.secrets, before.matches, before.problem) == ("dict://test", 1, True, "")
    rotation = policy.rotate(storage, None)
    policy.promote(rotation)
    assert rotation.secrets == 1 and rotation.old_key_id == before.key_id
    assert policy.status(storage).database_key_id == rotation.new_key.key_id.hex() != before.key_id
    # A fresh policy (another process) finds the promoted key and opens the re-sealed value.
    assert MasterKeyPolicy("dict://test", _source(tmp_path)).open(storage, storage.sealed_values()) == {"A": "value-a"}

    storage.sealed.clear()
    policy.after_delete(storage)
    assert storage.key_check() is None


def test_a_key_that_does_not_match_the_storage_is_refused_naming_it(tmp_path: Path) -> None:
    storage = DictStorage()
    storage.sealed["A"] = MasterKeyPolicy("dict://test", _source(tmp_path / "one")).seal_for_put(storage, "A", "v", 1)
    other = MasterKeyPolicy("dict://test", _source(tmp_path / "two"))
    other.seal_for_put(DictStorage(), "B", "w", 1)  # creates a different key in the other home
    with pytest.raises(GRPCError) as caught:
        other.open(storage, storage.sealed_values())
    assert caught.value.status == Status.INTERNAL
    assert "does not match this database (dict://test)" in caught.value.message
