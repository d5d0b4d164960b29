"""The places a master key can live: an environment variable, the OS keychain, a private file.

Each store holds the key as its base64 text (see ``_key``) and, during a key
rotation, a *staged* next key: the rotation stages the new key before it
re-encrypts anything and promotes it after the database commits, so a crash
at any point leaves a key that opens every stored value (see
``MasterKeySource.find``).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from ..keychain import Keychain, KeychainUnavailable
from ._errors import KeyLookupFailed, MasterKeyError

__all__ = ["ENV_VAR", "EnvironmentKeyStore", "FileKeyStore", "KeyStore", "KeychainKeyStore"]

ENV_VAR = "STIGMER_MASTER_KEY"
_MAX_KEY_FILE_BYTES = 4096  # a key is 45 bytes; anything much larger is not a key file


class KeyStore(Protocol):
    """One place a master key can live.

    ``load``/``load_staged`` return the stored text or None when there is
    none; they raise ``MasterKeyError`` when the place holds something that
    must not be used, and ``KeyLookupFailed`` when it did not answer.
    """

    place: str
    staged_place: str
    writable: bool

    def load(self) -> str | None: ...
    def load_staged(self) -> str | None: ...
    def save(self, text: str) -> None: ...
    def stage(self, text: str) -> None: ...
    def discard_staged(self) -> None: ...
    def absence(self) -> str: ...


class EnvironmentKeyStore:
    """``STIGMER_MASTER_KEY``: for CI and containers. Read-only: Stigmer cannot change a variable."""

    writable = False

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self.place = f"the {ENV_VAR} environment variable"
        self.staged_place = self.place

    def load(self) -> str | None:
        return self._environ.get(ENV_VAR) or None

    def load_staged(self) -> str | None:
        return None

    def save(self, text: str) -> None:
        raise MasterKeyError(f"Stigmer cannot store a key in {self.place}")

    stage = save

    def discard_staged(self) -> None:
        pass

    def absence(self) -> str:
        return f"{ENV_VAR} is not set"


class KeychainKeyStore:
    """An entry of the OS keychain (service ``stigmer``), one per Stigmer home directory.

    :param keychain: an open, trusted keychain (``stigmer_backend.backends.keychain.open_keychain``).
    :param account: the entry's account name; the staged key uses ``account`` + ``".next"``.
    """

    writable = True

    def __init__(self, keychain: Keychain, account: str) -> None:
        self._keychain = keychain
        self._account = account
        self._staged_account = account + ".next"
        self.place = f"the OS keychain ({keychain.name}, service 'stigmer', account {account!r})"
        self.staged_place = f"the OS keychain ({keychain.name}, service 'stigmer', account {self._staged_account!r})"

    def _get(self, account: str) -> str | None:
        try:
            return self._keychain.get(account)
        except KeychainUnavailable as error:
            raise KeyLookupFailed(str(error)) from None

    def _set(self, account: str, text: str, place: str) -> None:
        try:
            self._keychain.set(account, text)
        except KeychainUnavailable as error:
            raise MasterKeyError(f"could not store the master key in {place}: {error}") from None

    def load(self) -> str | None:
        return self._get(self._account)

    def load_staged(self) -> str | None:
        return self._get(self._staged_account)

    def save(self, text: str) -> None:
        self._set(self._account, text, self.place)

    def stage(self, text: str) -> None:
        self._set(self._staged_account, text, self.staged_place)

    def discard_staged(self) -> None:
        try:
            self._keychain.delete(self._staged_account)
        except KeychainUnavailable as error:
            raise MasterKeyError(f"could not remove the staged key from {self.staged_place}: {error}") from None

    def absence(self) -> str:
        return f"{self.place} has no such entry"


class FileKeyStore:
    """A private file, ``$STIGMER_HOME/master.key``: where no trusted keychain exists (headless machines).

    The file holds the key's base64 text and a newline. It is created 0600
    in a directory that must be private (no group or other permission bits),
    written atomically (a temporary file renamed into place), and refused
    when read if group or others may access it, if another user owns it, or
    if it is a symbolic link.

    :param path: the key file; the staged key is ``path`` + ``".next"``.
    """

    writable = True

    def __init__(self, path: Path) -> None:
        self.path = path
        self.staged_path = path.with_name(path.name + ".next")
        self.place = str(path)
        self.staged_place = str(self.staged_path)

    def load(self) -> str | None:
        return _read_private(self.path)

    def load_staged(self) -> str | None:
        return _read_private(self.staged_path)

    def save(self, text: str) -> None:
        _write_private(self.path, text)

    def stage(self, text: str) -> None:
        _write_private(self.staged_path, text)

    def discard_staged(self) -> None:
        self.staged_path.unlink(missing_ok=True)

    def absence(self) -> str:
        return f"{self.path} does not exist"


def _read_private(path: Path) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise MasterKeyError(f"the key file {path} is a symbolic link; it must be a regular file") from None
        raise MasterKeyError(f"cannot read the key file {path}: {error.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise MasterKeyError(f"the key file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise MasterKeyError(
                f"the key file {path} is accessible by group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
                f"refusing to use it: run `chmod 600 {path}`"
            )
        if info.st_uid != os.geteuid():
            raise MasterKeyError(f"the key file {path} belongs to another user (uid {info.st_uid}); refusing to use it")
        data = file.read(_MAX_KEY_FILE_BYTES)
    return data.decode("ascii", errors="replace")


def _write_private(path: Path, text: str) -> None:
    directory = path.parent
    try:
        mode = stat.S_IMODE(os.stat(directory).st_mode)
        if mode & 0o077:
            raise MasterKeyError(
                f"{directory} is accessible by group or others (mode {mode:04o}); the master key is written only "
                f"into a private directory: run `chmod 700 {directory}`"
            )
        temporary = directory / f".{path.name}.{os.getpid()}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                os.fchmod(file.fileno(), 0o600)  # exact, whatever the umask
                file.write(text.encode("ascii") + b"\n")
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        directory_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(directory_fd)  # the rename itself must survive a crash
        finally:
            os.close(directory_fd)
    except OSError as error:
        raise MasterKeyError(f"cannot write the key file {path}: {error.strerror}") from None
