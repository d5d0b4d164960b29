"""Where ``stigmer login`` keeps the bearer token of a remote endpoint.

In the OS keychain when a trustworthy one is available (see
``stigmer_backend.backends.keychain``), under the account ``token@HOST:PORT``;
otherwise in ``$STIGMER_HOME/token``, a 0600 file in the 0700 home, holding
the endpoint with its token so a token is never sent to an endpoint it was
not saved for. Never in ``config.json``, never in a log or an error message.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from ..home import stigmer_home
from ..keychain import KeychainUnavailable, open_keychain
from ..private_files import read_private, write_private

__all__ = ["delete_token", "load_token", "save_token", "token_file_path"]


def token_file_path() -> Path:
    """``$STIGMER_HOME/token``: used only where no keychain is available."""
    return stigmer_home() / "token"


def _account(endpoint: str) -> str:
    return f"token@{endpoint}"


def save_token(endpoint: str, token: str) -> str:
    """Stores ``token`` for ``endpoint``, replacing any saved one; returns where, for people to read.

    Raises ``OSError`` if the file fallback cannot be written; then nothing changed.
    """
    try:
        keychain = open_keychain()
        keychain.set(_account(endpoint), token)
    except KeychainUnavailable as why:
        _write_file(endpoint, token)
        return f"{token_file_path()} (0600; no OS keychain: {why})"
    _remove_file()  # a stale plaintext copy must not outlive the move into the keychain
    return f"the OS keychain ({keychain.name})"


def load_token(endpoint: str) -> str | None:
    """The token saved for ``endpoint``, or ``None`` if there is none (or the keychain cannot be read)."""
    saved = _read_file()
    token = saved.get("token") if saved is not None and saved.get("endpoint") == endpoint else None
    if isinstance(token, str):
        return token
    try:
        return open_keychain().get(_account(endpoint))
    except KeychainUnavailable:
        return None


def delete_token(endpoint: str) -> list[str]:
    """Removes the token saved for ``endpoint`` from the file and the keychain; returns what was removed."""
    removed = []
    saved = _read_file()
    if saved is not None and saved.get("endpoint") == endpoint:
        _remove_file()
        removed.append(str(token_file_path()))
    with contextlib.suppress(KeychainUnavailable):
        keychain = open_keychain()
        if keychain.delete(_account(endpoint)):
            removed.append(f"the OS keychain ({keychain.name})")
    return removed


def _read_file() -> dict[str, Any] | None:
    """The token file's JSON object (as ``_write_file`` writes it; read back, any JSON), or ``None``."""
    text = read_private(token_file_path(), "the token file", secret=True)  # refuses a file others control
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _write_file(endpoint: str, token: str) -> None:
    # Created 0600 and exclusively before the token is written: no moment where another user could read it,
    # and no link planted in the home can redirect it.
    write_private(token_file_path(), json.dumps({"endpoint": endpoint, "token": token}))


def _remove_file() -> None:
    with contextlib.suppress(FileNotFoundError):
        token_file_path().unlink()
