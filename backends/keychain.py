"""The OS keychain, through ``keyring``, trusted only when it really protects secrets.

``keyring`` happily selects a backend that stores nothing (``fail``,
``null``) or stores plain text (``keyrings.alt``'s file backends). Here only a
*recommended* backend (keyring's own notion: priority >= 1) outside
``keyrings.alt`` is used; otherwise the keychain counts as unavailable and
callers fall back to a private file. Every call is bounded by a timeout,
because a locked keychain can block on a prompt nobody will answer, and a
write is read back before it is trusted.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # keyring is imported only when a keychain is opened
    from keyring.backend import KeyringBackend

__all__ = ["Keychain", "KeychainUnavailable", "open_keychain"]

SERVICE = "stigmer"
# keyrings.alt stores plain text; keyring's chainer is recommended whenever two
# backends are viable and falls through to the next one (keyrings.alt's plaintext
# file, say) when the real keychain refuses a write, e.g. because it is locked.
_UNTRUSTED_MODULES = ("keyrings.alt", "keyring.backends.chainer")
DEFAULT_TIMEOUT = 5.0
T = TypeVar("T")


class KeychainUnavailable(Exception):
    """No trustworthy keychain here, or it did not answer in time; the message says which."""


class Keychain:
    """One keychain backend; ``get``/``set``/``delete`` entries of service ``stigmer``."""

    def __init__(self, backend: KeyringBackend, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._backend = backend
        self._timeout = timeout

    @property
    def name(self) -> str:
        return f"{type(self._backend).__module__}.{type(self._backend).__name__}"

    def _call(self, what: str, function: Callable[[], T]) -> T:
        result: concurrent.futures.Future[T] = concurrent.futures.Future()

        def target() -> None:
            try:
                result.set_result(function())
            except BaseException as error:  # handed to the caller below
                result.set_exception(error)

        # A daemon thread, not an executor: a keychain stuck on a prompt must not keep the process alive.
        threading.Thread(target=target, name=f"keychain-{what}", daemon=True).start()
        try:
            return result.result(timeout=self._timeout)
        except concurrent.futures.TimeoutError:
            raise KeychainUnavailable(f"the keychain ({self.name}) did not answer within {self._timeout:g}s") from None
        except KeychainUnavailable:
            raise
        except Exception as error:
            raise KeychainUnavailable(f"the keychain ({self.name}) failed to {what}: {type(error).__name__}") from None

    def get(self, account: str) -> str | None:
        return self._call("read", lambda: self._backend.get_password(SERVICE, account))

    def set(self, account: str, value: str) -> None:
        self._call("write", lambda: self._backend.set_password(SERVICE, account, value))
        if self.get(account) != value:
            raise KeychainUnavailable(f"the keychain ({self.name}) did not keep what was written to it")

    def delete(self, account: str) -> bool:
        """Removes the entry; False if there was none."""
        import keyring.errors

        def delete() -> bool:
            try:
                self._backend.delete_password(SERVICE, account)
            except keyring.errors.PasswordDeleteError:
                return False
            return True

        return self._call("delete", delete)


def open_keychain(timeout: float = DEFAULT_TIMEOUT) -> Keychain:
    """The best recommended keychain backend; ``KeychainUnavailable`` if there is none."""
    try:
        import keyring.backend
        import keyring.core
    except ImportError:
        raise KeychainUnavailable("the keyring package is not installed") from None
    candidates = [
        backend
        for backend in keyring.backend.get_all_keyring()
        if keyring.core.recommended(backend) and not type(backend).__module__.startswith(_UNTRUSTED_MODULES)
    ]
    if not candidates:
        raise KeychainUnavailable("no secure OS keychain is available (keyring found none it recommends)")
    return Keychain(max(candidates, key=lambda backend: backend.priority), timeout)
