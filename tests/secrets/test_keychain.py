"""The master key in a real OS keychain (gnome-keyring's Secret Service), and the headless fallback.

Each case runs ``keychain_scenario.py`` in a child process: under
``dbus-run-session`` with a gnome-keyring daemon for the keychain cases, and
with no session bus for the headless ones. ``scripts/setup`` installs
gnome-keyring and dbus; a machine without them fails here rather than
skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCENARIO = Path(__file__).with_name("keychain_scenario.py")
VALUES = {"API_TOKEN": "tok-keychain-7d1e9a", "DB_PASSWORD": "pw-keychain-c3b4f2"}
UNLOCKED = "echo -n test-password | gnome-keyring-daemon --unlock --components=secrets >/dev/null"
LOCKED = "gnome-keyring-daemon --start --components=secrets >/dev/null 2>&1"


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """A private Stigmer home, and a private XDG data directory (gnome-keyring's and keyrings.alt's files)."""
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir(mode=0o700)
    data.mkdir(mode=0o700)
    return home, data


def run_scenario(mode: str, home: Path, data: Path, *, daemon: str | None, keyring_backend: str = "") -> dict:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"DBUS_SESSION_BUS_ADDRESS", "STIGMER_MASTER_KEY", "PYTHON_KEYRING_BACKEND"}
    }
    env |= {"XDG_DATA_HOME": str(data), "STIGMER_HOME": str(home)}
    if keyring_backend:
        env["PYTHON_KEYRING_BACKEND"] = keyring_backend
    command = [sys.executable, str(SCENARIO), mode, str(home)]
    if daemon is not None:
        for tool in ("dbus-run-session", "gnome-keyring-daemon"):
            assert shutil.which(tool), f"{tool} is missing: run scripts/setup (it installs gnome-keyring and dbus)"
        command = ["dbus-run-session", "--", "sh", "-c", f'{daemon}; exec "$@"', "sh", *command]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_key_lives_in_a_real_secret_service_and_round_trips(dirs: tuple[Path, Path]) -> None:
    home, data = dirs
    observed = run_scenario("secret-service", home, data, daemon=UNLOCKED)
    # The Secret Service itself, not keyring's chainer (which falls through to plain-text backends).
    assert observed["keychain"] == "keyring.backends.SecretService.Keyring"
    place = f"the OS keychain (keyring.backends.SecretService.Keyring, service 'stigmer', account 'master-key:{home}')"
    assert observed["place"] == place
    assert observed["matches"] is True
    assert observed["key_file_exists"] is False
    assert observed["stored_key_id"] == observed["key_id"]
    assert observed["values_after_reopen"] == VALUES
    assert observed["values_with_decoy_file"] == VALUES
    assert observed["with_wrong_env_key"]["status"] == "INTERNAL"
    assert observed["with_wrong_env_key"]["message"].startswith(
        "the master key in the STIGMER_MASTER_KEY environment variable does not match this database"
    )
    assert observed["rotated_place"] == place
    assert observed["rotated_key_id"] == observed["stored_key_id_after_rotation"] != observed["key_id"]
    assert observed["staged_entry_after_rotation"] is None
    assert observed["values_after_rotation"] == VALUES
    assert observed["decoy_file_untouched"] is True


def test_a_locked_keychain_is_reported_and_no_key_is_made_elsewhere(dirs: tuple[Path, Path]) -> None:
    home, data = dirs
    observed = run_scenario("locked", home, data, daemon=LOCKED)
    assert observed["keychain"] == "keyring.backends.SecretService.Keyring"
    assert observed["put"]["status"] == "UNAVAILABLE"
    message = observed["put"]["message"]
    assert message.startswith("no master key found, and the keychain (keyring.backends.SecretService.Keyring)")
    assert message.endswith("unlock the keychain, or give the key in STIGMER_MASTER_KEY")
    assert observed["listed"] == 0
    assert observed["key_file_exists"] is False


@pytest.mark.parametrize(
    "keyring_backend",
    ["keyrings.alt.file.PlaintextKeyring", "keyring.backends.null.Keyring"],
    ids=["plaintext", "null"],
)
def test_headless_the_key_goes_to_the_file_never_to_an_untrusted_keyring(
    dirs: tuple[Path, Path], keyring_backend: str
) -> None:
    home, data = dirs
    observed = run_scenario("headless", home, data, daemon=None, keyring_backend=keyring_backend)
    assert observed["keyring_default"] == keyring_backend  # keyring itself would use it...
    assert observed["open_keychain"] == "no secure OS keychain is available (keyring found none it recommends)"
    assert observed["place"] == str(home / "master.key")  # ...Stigmer does not
    assert observed["matches"] is True
    assert observed["key_file_mode"] == "0o600"
    assert observed["values_after_reopen"] == VALUES
    assert observed["default_backend_entry"] is None
    assert observed["key_in_data_home"] is False
