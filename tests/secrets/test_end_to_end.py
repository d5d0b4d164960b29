"""The issue's "done when", on a real database file, through the CLI and the backend.

Secrets are put with ``stigmer secret put``; two agent instances reference
different secrets; executions are created, claimed and given their
contexts; a runner resolves and masks as it reports. Then: no plaintext in
the database file, its WAL, the logs or any CLI output; tampering, row
swapping, a wrong key and a loose key-file mode are each refused with a
clear error; a rotation round-trips every value.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import sqlite3
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner, Result
from grpclib.const import Status

from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.cli.main import cli
from stigmer_backend.gen.stigmer.backend import v1 as pb
from stigmer_backend.runner.masking import Masker, MaskingFilter
from stigmer_backend.runner.resolver import resolve
from tests.builders import failure

from .workload import RUNNER, agent_spec, apply_agent, context_of, random_key_text, running_execution

VALUES = {
    "OPENAI_API_KEY": "sk-e2e-openai-9f8e7d6c5b4a3928",
    "GH_TOKEN": "ghp_e2eGithubToken1234567890abcdef",
    "DB_PASSWORD": "correct horse battery staple e2e",
}
ALPHA = {"OPENAI_API_KEY", "GH_TOKEN"}
BETA = {"DB_PASSWORD"}


def forms(value: str) -> list[bytes]:
    """The plaintext as it would appear if stored or printed raw or lightly encoded."""
    raw = value.encode()
    return [
        raw,
        base64.b64encode(raw),
        base64.b64encode(raw).rstrip(b"="),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
        quote(value, safe="").encode(),
        raw.hex().encode(),
        value.encode("utf-16-le"),
    ]


def assert_no_plaintext(where: str, data: bytes | str) -> None:
    blob = data.encode() if isinstance(data, str) else data
    for name, value in VALUES.items():
        for form in forms(value):
            assert form not in blob, f"{where} holds the value of {name} ({form[:12]!r}...)"


class Cli:
    """``stigmer`` run in-process, keeping every output for the final check."""

    def __init__(self) -> None:
        self.outputs: list[str] = []

    def __call__(self, *args: str, input: str | None = None) -> Result:
        result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
        self.outputs += [result.stdout, result.stderr]
        return result

    def fails(self, *args: str, input: str | None = None) -> str:
        """The one-line error of a command that must exit 1."""
        result = self(*args, input=input)
        assert result.exit_code == 1, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
        return lines[0].removeprefix("Error: ")


def run(coroutine):
    return asyncio.run(coroutine)


async def contexts(db: SqliteBackend) -> dict[str, pb.GetExecutionContextResponse]:
    """A fresh running execution of each agent, and its context."""
    return {agent: await context_of(db, await running_execution(db, agent)) for agent in ("alpha", "beta")}


def test_secrets_stay_secret_from_put_to_rotation(
    home: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    stigmer = Cli()
    db_path, key_file = home / "local.db", home / "master.key"

    # -- put, list, status through the CLI ---------------------------------------------------------
    for name, value in VALUES.items():
        result = stigmer("secret", "put", name, input=value + "\n")
        assert result.exit_code == 0, result.output
        assert f"secret {name} created (version 1)" in result.stderr
    assert stigmer("secret", "put", "GH_TOKEN", input=VALUES["GH_TOKEN"]).stderr.strip() == (
        "secret GH_TOKEN updated (version 2)"
    )
    listed = json.loads(stigmer("secret", "list", "-o", "json").stdout)["secrets"]
    assert [(secret["name"], int(secret["version"])) for secret in listed] == [
        ("DB_PASSWORD", 1),
        ("GH_TOKEN", 2),
        ("OPENAI_API_KEY", 1),
    ]
    status = json.loads(stigmer("secret", "status", "-o", "json").stdout)
    assert (status["place"], status["matches"], status["secrets"]) == (str(key_file), True, 3)
    assert key_file.stat().st_mode & 0o777 == 0o600

    # -- agents, executions, contexts, a runner reporting -----------------------------------------
    async def execute() -> None:
        async with SqliteBackend() as db:  # as the CLI opens it: $STIGMER_HOME/local.db, key from the file
            await apply_agent(
                db,
                "alpha",
                agent_spec(
                    credentials="${.secrets.OPENAI_API_KEY}", env={"AUTH": "Bearer ${ .secrets.GH_TOKEN }", "MODE": "x"}
                ),
            )
            await apply_agent(db, "beta", agent_spec(env={"PGPASSWORD": "${.secrets.DB_PASSWORD}"}))
            await apply_agent(db, "gamma", agent_spec(env={"X": "${.secrets.NOT_THERE}"}))
            given = await contexts(db)
            assert dict(given["alpha"].secrets) == {name: VALUES[name] for name in ALPHA}
            assert given["alpha"].environment == {"AUTH": f"Bearer {VALUES['GH_TOKEN']}", "MODE": "x"}
            assert dict(given["beta"].secrets) == {"DB_PASSWORD": VALUES["DB_PASSWORD"]}
            for agent, others in (("alpha", BETA), ("beta", ALPHA)):
                wire = bytes(given[agent])
                for name in others:
                    assert VALUES[name].encode() not in wire, f"{agent}'s context holds {name}"

            # Only the running execution's holder, only existing secrets.
            pending = await db.create_execution(
                pb.CreateExecutionRequest(
                    request_id="pending-1",
                    agent_instance=pb.AgentInstanceRef(name="alpha"),
                    input=pb.ExecutionInput(message="wait"),
                )
            )
            refused = await failure(context_of(db, pending.execution))
            assert refused.status == Status.FAILED_PRECONDITION and "EXECUTION_PHASE_PENDING" in refused.message
            held = await running_execution(db, "alpha")
            refused = await failure(context_of(db, held, runner="runner-2"))
            assert refused.status == Status.FAILED_PRECONDITION and "held by another runner" in refused.message
            refused = await failure(context_of(db, await running_execution(db, "gamma")))
            assert refused.status == Status.FAILED_PRECONDITION
            assert refused.message == "agent instance 'gamma' references secrets that do not exist: NOT_THERE"

            # A runner: resolve at the last moment, mask everything it logs and reports.
            context = given["alpha"]
            masker = Masker.from_context(context)
            log = logging.getLogger("stigmer.test.runner")
            log.addFilter(MaskingFilter(masker))
            headers = resolve({"Authorization": "Bearer ${.secrets.OPENAI_API_KEY}"}, context.secrets)
            log.debug("calling the model with %s", headers)
            token = VALUES["GH_TOKEN"]
            echoed = f"the model said {token} / {base64.b64encode(token.encode()).decode()} / {quote(token)}"
            report = pb.UpdateExecutionStatusRequest(
                execution_id=context.execution.id,
                phase=pb.ExecutionPhase.SUCCEEDED,
                runner_id=RUNNER,
                message=echoed,
                output=pb.ExecutionOutput(text=echoed, data=None),
            )
            done = await db.update_execution_status(masker.mask_message(report))
            assert done.execution.status.message == "the model said *** / *** / ***"

            # Plaintext appears nowhere on disk while the write-ahead log is live.
            wal = db_path.with_name("local.db-wal")
            assert wal.stat().st_size > 0
            assert_no_plaintext("the -wal file", wal.read_bytes())
            assert_no_plaintext("the database file", db_path.read_bytes())

    run(execute())
    assert_no_plaintext("the database file after a checkpoint", db_path.read_bytes())
    assert "calling the model with {'Authorization': 'Bearer ***'}" in caplog.text

    # -- rotation round-trips every value ----------------------------------------------------------
    before = (status["key_id"], key_file.read_text())
    result = stigmer("secret", "rotate-key")
    assert result.exit_code == 0, result.output
    assert "re-encrypted 3 secret(s) under a new master key" in result.stderr
    status = json.loads(stigmer("secret", "status", "-o", "json").stdout)
    assert status["matches"] is True and status["key_id"] != before[0]
    assert key_file.read_text() != before[1]

    async def values_now() -> dict[str, str]:
        async with SqliteBackend() as db:
            given = await contexts(db)
        return {**given["alpha"].secrets, **given["beta"].secrets}

    assert run(values_now()) == VALUES

    # -- tampering, row swapping -------------------------------------------------------------------
    def rows() -> dict[str, bytes]:
        with closing(sqlite3.connect(db_path)) as raw:
            return dict(raw.execute("SELECT name, ciphertext FROM secrets"))

    def store(ciphertexts: dict[str, bytes]) -> None:
        with closing(sqlite3.connect(db_path)) as raw, raw:
            for name, ciphertext in ciphertexts.items():
                raw.execute("UPDATE secrets SET ciphertext = ? WHERE name = ?", (ciphertext, name))

    original = rows()
    flipped = bytearray(original["GH_TOKEN"])
    flipped[-5] ^= 0x10
    store({"GH_TOKEN": bytes(flipped)})
    error = run(failure(values_now()))
    assert error.status == Status.INTERNAL
    assert error.message == (
        f"{db_path}: secret 'GH_TOKEN' failed its integrity check: "
        "its stored ciphertext was altered, belongs to another secret, or is an older value of this one"
    )
    store({"GH_TOKEN": original["OPENAI_API_KEY"], "OPENAI_API_KEY": original["GH_TOKEN"]})
    error = run(failure(values_now()))
    assert error.status == Status.INTERNAL and "failed its integrity check" in error.message
    store(original)
    assert run(values_now()) == VALUES

    # -- an older ciphertext of the same secret put back (a restored backup row) --------------------
    async def put_gh_token(value: str) -> None:
        async with SqliteBackend() as db:
            await db.put_secret(pb.PutSecretRequest(name="GH_TOKEN", value=value))

    run(put_gh_token("ghp_rotated_value_0000"))
    store({"GH_TOKEN": original["GH_TOKEN"]})
    error = run(failure(values_now()))
    assert error.status == Status.INTERNAL
    assert "'GH_TOKEN' failed its integrity check" in error.message and "older value" in error.message

    # -- a ciphertext stored as TEXT by another program ------------------------------------------------
    with closing(sqlite3.connect(db_path)) as raw, raw:
        raw.execute("UPDATE secrets SET ciphertext = 'not a blob' WHERE name = 'GH_TOKEN'")
    error = run(failure(values_now()))
    assert error.status == Status.INTERNAL
    assert "'GH_TOKEN' has a stored ciphertext that is not bytes (the database was altered)" in error.message
    run(put_gh_token(VALUES["GH_TOKEN"]))

    # -- a wrong key, a loose key file ---------------------------------------------------------------
    right_key = key_file.read_text()
    key_file.write_text(random_key_text() + "\n")
    mismatch = f"the master key in {key_file} does not match this database ({db_path})"
    assert stigmer.fails("secret", "status").startswith(mismatch)
    assert stigmer.fails("secret", "put", "NEW_ONE", input="some value").startswith(f"INTERNAL: {mismatch}")
    assert stigmer.fails("secret", "rotate-key").startswith(f"INTERNAL: {mismatch}")
    assert run(failure(values_now())).message.startswith(mismatch)
    key_file.write_text(right_key)
    key_file.chmod(0o644)
    loose = f"the key file {key_file} is accessible by group or others (mode 0644)"
    assert stigmer.fails("secret", "put", "NEW_ONE", input="some value").startswith(f"INTERNAL: {loose}")
    assert stigmer.fails("secret", "status").startswith(loose)
    key_file.chmod(0o600)
    assert run(values_now()) == VALUES
    assert [s["name"] for s in json.loads(stigmer("secret", "list", "-o", "json").stdout)["secrets"]] == sorted(VALUES)

    # -- nothing leaked anywhere ---------------------------------------------------------------------
    assert_no_plaintext("the CLI output", "\n".join(stigmer.outputs))
    assert_no_plaintext("the logs", caplog.text)
    captured = capfd.readouterr()
    assert_no_plaintext("the process's stdout and stderr", captured.out + captured.err)
    for path in home.iterdir():
        if path.is_file():
            assert_no_plaintext(str(path), path.read_bytes())
