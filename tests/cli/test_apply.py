"""``stigmer apply`` and ``stigmer diff``: many files, both manifest forms, secrets, dry runs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from stigmer_backend.backends.sqlite import SqliteBackend
from stigmer_backend.gen.stigmer.backend import v1 as pb
from tests.builders import create_request, one_line_error

STIGMER = str(Path(sys.executable).with_name("stigmer"))


def short(name: str, instructions: str = "Repeat.", provider: str = "echo") -> str:
    return f"name: {name}\nspec:\n  instructions: {instructions}\n  model: {{provider: {provider}, model: m1}}\n"


def resource(name: str, instructions: str = "Repeat.") -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: agentic.stigmer.ai/v1
        kind: AgentInstance
        metadata:
          name: {name}
        spec:
          instructions: {instructions}
          model: {{provider: echo, model: m1}}
        """
    )


def agents(stigmer) -> list[str]:
    listed = stigmer("agent", "list", "-o", "yaml").stdout
    return sorted(line.split(": ", 1)[1] for line in listed.splitlines() if line.startswith("  name: "))


def secret_value(stigmer, name: str) -> str:
    """The value stored under ``name``, read the only way the contract allows: a running execution's context."""

    async def read() -> str:
        os.environ["STIGMER_MASTER_KEY"] = stigmer.env["STIGMER_MASTER_KEY"]
        try:
            async with SqliteBackend(Path(stigmer.home) / "local.db") as backend:
                spec = pb.AgentInstanceSpec(
                    model=pb.ModelConfig(provider="echo", model="m"),
                    env=[pb.EnvironmentVariable(name="V", value=f"${{.secrets.{name}}}")],
                )
                await backend.apply_agent_instance(pb.ApplyAgentInstanceRequest(name="reader", spec=spec))
                created = await backend.create_execution(create_request(os.urandom(8).hex(), agent="reader"))
                await backend.update_execution_status(
                    pb.UpdateExecutionStatusRequest(
                        execution_id=created.execution.id,
                        phase=pb.ExecutionPhase.RUNNING,
                        runner_id="t",
                        lease_duration=timedelta(minutes=1),
                    )
                )
                context = await backend.get_execution_context(
                    pb.GetExecutionContextRequest(execution_id=created.execution.id, runner_id="t")
                )
                return context.environment["V"]
        finally:
            del os.environ["STIGMER_MASTER_KEY"]

    return asyncio.run(read())


def test_every_file_and_directory_is_applied(stigmer, tmp_path):
    (tmp_path / "a.yaml").write_text(short("alpha"))
    folder = tmp_path / "more"
    folder.mkdir()
    (folder / "2.yml").write_text(short("delta") + "---\n" + short("gamma"))
    (folder / "1.json").write_text('{"name": "beta", "spec": {"model": {"provider": "echo", "model": "m"}}}')
    (folder / "notes.txt").write_text("not a manifest")
    result = stigmer("apply", "-f", str(tmp_path / "a.yaml"), "-f", str(folder))
    assert result.exit_code == 0, result.output
    # Files in the order given, a directory's files sorted by name, documents in file order.
    assert [line.split()[2] for line in result.stderr.splitlines()] == ["alpha", "beta", "delta", "gamma"]
    assert agents(stigmer) == ["alpha", "beta", "delta", "gamma"]


def test_the_kubernetes_form_is_the_same_agent_as_the_short_form(stigmer, tmp_path):
    (tmp_path / "short.yaml").write_text(short("helper"))
    (tmp_path / "resource.yaml").write_text(resource("helper"))
    assert stigmer("apply", "-f", str(tmp_path / "resource.yaml")).stderr == "agent instance helper created\n"
    assert stigmer("apply", "-f", str(tmp_path / "short.yaml")).stderr == "agent instance helper unchanged\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (resource("x").replace("AgentInstance", "Workflow"), "unknown kind 'Workflow'; known kinds: AgentInstance"),
        (resource("x").replace("v1", "v2"), "unknown apiVersion 'agentic.stigmer.ai/v2'; known: agentic.stigmer.ai/v1"),
        (short("x").replace("name: x", "kind: Secret\nname: x"), "unknown kind 'Secret'; known kinds: AgentInstance"),
        (resource("x").replace("  name: x", "  labels: {}"), "unknown key metadata.labels"),
        (resource("x").replace("kind: AgentInstance\n", ""), "kind is required with apiVersion"),
        (short("x") + "labels: {}\n", "unknown key labels"),
    ],
    ids=["kind", "api-version", "short-kind", "metadata-key", "no-kind", "short-key"],
)
def test_an_unknown_kind_api_version_or_key_names_what_is_known(stigmer, tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(short("first") + "---\n" + text)
    line = one_line_error(stigmer("apply", "-f", str(path)))
    assert line.startswith(f"Error: {path}, document 2: ") and expected in line
    assert agents(stigmer) == []


def test_concatenated_manifests_with_a_duplicate_key_name_the_line(stigmer):
    text = short("one") + short("two")  # `cat a.yaml b.yaml` without ---: one mapping, `name` twice
    line = one_line_error(stigmer("apply", "-f", "-", input=text))
    assert line == "Error: -: line 5: duplicate key 'name'"


def test_nothing_is_written_when_a_later_file_is_bad(stigmer, tmp_path):
    (tmp_path / "good.yaml").write_text(short("good"))
    (tmp_path / "bad.yaml").write_text(short("bad").replace("instructions", "instructons"))
    result = stigmer(
        "apply", "--secret", "TOKEN=abc", "-f", str(tmp_path / "good.yaml"), "-f", str(tmp_path / "bad.yaml")
    )
    assert "instructons" in one_line_error(result)  # checked before anything else is said or done
    assert agents(stigmer) == [] and "TOKEN" not in stigmer("secret", "list").stdout


def test_the_same_agent_in_two_files_is_an_error_naming_both(stigmer, tmp_path):
    (tmp_path / "a.yaml").write_text(short("twin"))
    (tmp_path / "b.yaml").write_text(resource("twin"))
    line = one_line_error(stigmer("apply", "-f", str(tmp_path)))
    assert f"{tmp_path / 'a.yaml'}, document 1 and {tmp_path / 'b.yaml'}, document 1" in line


def test_a_secret_in_argv_is_stored_with_one_warning_line(stigmer, tmp_path):
    (tmp_path / "a.yaml").write_text(short("alpha"))
    result = stigmer("apply", "-f", str(tmp_path / "a.yaml"), "--secret", "GH_TOKEN=abc=def")
    assert result.exit_code == 0, result.output
    warning, *rest = result.stderr.splitlines()
    assert "shell history" in warning and "--secret NAME reads it from $NAME" in warning
    assert rest == ["secret GH_TOKEN created (version 1)", "agent instance alpha created"]
    assert "abc" not in result.output
    assert secret_value(stigmer, "GH_TOKEN") == "abc=def"


def test_a_bare_secret_comes_from_the_environment_else_stdin(stigmer):
    stigmer.env["FROM_ENV"] = "env-value"
    result = stigmer("apply", "--secret", "FROM_ENV", "--secret", "FROM_STDIN", input="stdin-value\n")
    assert result.exit_code == 0, result.output
    assert result.stderr == "secret FROM_ENV created (version 1)\nsecret FROM_STDIN created (version 1)\n"
    assert secret_value(stigmer, "FROM_ENV") == "env-value"
    assert secret_value(stigmer, "FROM_STDIN") == "stdin-value"


def test_stdin_serves_one_purpose(stigmer):
    line = one_line_error(stigmer("apply", "-f", "-", "--secret", "MISSING", input=short("x")))
    assert "$MISSING is not set and stdin is already used" in line
    assert agents(stigmer) == []
    line = one_line_error(stigmer("apply", "--secret", "ONE", "--secret", "TWO", input="v"))
    assert "--secret TWO: $TWO is not set and stdin is already used" in line
    assert "ONE" not in stigmer("secret", "list").stdout


def test_a_bare_secret_on_a_terminal_is_a_hidden_prompt(stigmer):
    import pty

    controller, terminal = pty.openpty()
    env = {**os.environ, **stigmer.env}
    env.pop("PROMPTED", None)
    process = subprocess.Popen(
        [STIGMER, "apply", "--secret", "PROMPTED"], stdin=terminal, stdout=terminal, stderr=terminal, env=env
    )
    os.close(terminal)
    seen = b""
    for answer in (b"typed-value\n", b"typed-value\n"):
        while not seen.rstrip().endswith(b":"):
            seen += os.read(controller, 1024)
        os.write(controller, answer)
        seen = b""
    assert process.wait(timeout=60) == 0
    os.close(controller)
    assert secret_value(stigmer, "PROMPTED") == "typed-value"


def test_nothing_to_apply_is_a_usage_error(stigmer):
    result = stigmer("apply")
    assert result.exit_code == 2 and "nothing to apply" in result.stderr


def test_dry_run_says_what_would_happen_and_writes_nothing(stigmer, tmp_path):
    (tmp_path / "same.yaml").write_text(short("same"))
    (tmp_path / "changed.yaml").write_text(short("changed"))
    stigmer("apply", "-f", str(tmp_path / "same.yaml"), "-f", str(tmp_path / "changed.yaml"), "--secret", "OLD=x")
    (tmp_path / "changed.yaml").write_text(short("changed", "Something else."))
    (tmp_path / "new.yaml").write_text(short("new"))
    result = stigmer("apply", "-f", str(tmp_path), "--secret", "OLD=y", "--secret", "NEW=z", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "secret OLD would be updated (now version 1)",
        "secret NEW would be created",
        "agent instance changed would be updated (now version 1)",
        "agent instance new would be created",
        "agent instance same would be unchanged",
    ]
    assert result.stderr.splitlines()[-1] == "dry run: nothing was written"
    assert agents(stigmer) == ["changed", "same"]
    assert "NEW" not in stigmer("secret", "list").stdout
    assert secret_value(stigmer, "OLD") == "x"


def test_diff_shows_the_difference_and_exits_as_diff_does(stigmer, tmp_path):
    path = tmp_path / "agent.yaml"
    path.write_text(short("helper"))
    created = stigmer("diff", "-f", str(path))
    assert created.exit_code == 1 and "+  instructions: Repeat." in created.stdout
    stigmer("apply", "-f", str(path))
    same = stigmer("diff", "-f", str(path))
    assert (same.exit_code, same.stdout) == (0, "")
    path.write_text(short("helper", "Say it twice."))
    changed = stigmer("diff", "-f", str(path))
    assert changed.exit_code == 1
    assert "-  instructions: Repeat.\n+  instructions: Say it twice.\n" in changed.stdout
    assert "--- helper (backend, version 1)" in changed.stdout
    broken = stigmer("diff", "-f", str(tmp_path / "missing.yaml"))
    assert broken.exit_code == 2 and "cannot read" in broken.stderr


def test_a_provider_no_runner_here_can_call_is_warned_about(stigmer, tmp_path):
    from stigmer_backend.runner.providers import SUPPORTED_PROVIDERS

    path = tmp_path / "agent.yaml"
    path.write_text(short("claude", provider="anthropic"))
    result = stigmer("apply", "-f", str(path))
    assert result.exit_code == 0
    warning, applied = result.stderr.splitlines()
    assert "cannot call provider 'anthropic'" in warning and ", ".join(sorted(SUPPORTED_PROVIDERS)) in warning
    assert applied == "agent instance claude created"
    path.write_text(short("local", provider="ollama"))
    assert "warning" not in stigmer("apply", "-f", str(path)).stderr
