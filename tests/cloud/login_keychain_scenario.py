"""Run by test_login.py inside ``dbus-run-session`` with an unlocked gnome-keyring: login keeps the token there.

``python login_keychain_scenario.py ENDPOINT`` reads the token on stdin, runs
the real ``stigmer login``, ``context`` and ``logout`` commands, looks into the
keychain between them, and prints one JSON object of what it observed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from stigmer_backend.backends.keychain import open_keychain

STIGMER = str(Path(sys.executable).with_name("stigmer"))


def stigmer(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([STIGMER, *args], input=stdin, capture_output=True, text=True, timeout=60)


def main() -> None:
    endpoint, token = sys.argv[1], sys.stdin.read().strip()
    home = Path(os.environ["STIGMER_HOME"])
    keychain = open_keychain()
    login = stigmer("login", "--endpoint", endpoint, "--plaintext", stdin=token)
    observed = {
        "keychain": keychain.name,
        "login": [login.returncode, login.stderr],
        "in_keychain": keychain.get(f"token@{endpoint}") == token,
        "token_file_exists": (home / "token").exists(),
        "token_in_config": token in (home / "config.json").read_text(),
    }
    context = stigmer("context", "-o", "json")
    observed["context"] = [
        context.returncode,
        json.loads(context.stdout) if context.returncode == 0 else context.stderr,
    ]
    logout = stigmer("logout")
    observed["logout"] = logout.returncode
    observed["in_keychain_after_logout"] = keychain.get(f"token@{endpoint}") is not None
    print(json.dumps(observed))


if __name__ == "__main__":
    main()
