"""``stigmer apply``, ``stigmer agent`` and ``stigmer execution`` on a real local database."""

from __future__ import annotations

import json
import textwrap

import pytest

from tests.builders import one_line_error

ECHO = textwrap.dedent(
    """\
    name: echo-bot
    spec:
      instructions: Repeat what you are told.
      model: {provider: echo, model: echo-1}
      env:
        - {name: LOG_LEVEL, value: debug}
    """
)


@pytest.fixture
def manifest(tmp_path):
    def write(text: str, name: str = "agent.yaml"):
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return write


def test_apply_reports_created_unchanged_updated_on_stderr(stigmer, manifest):
    path = manifest(ECHO)
    created = stigmer("apply", "-f", path)
    assert (created.stdout, created.stderr) == ("", "agent instance echo-bot created\n")
    assert stigmer("apply", "-f", path).stderr == "agent instance echo-bot unchanged\n"
    changed = manifest(ECHO.replace("Repeat", "Echo"))
    assert stigmer("apply", "-f", changed).stderr == "agent instance echo-bot updated\n"
    shown = json.loads(stigmer("agent", "get", "echo-bot", "-o", "json").stdout)
    assert shown["name"] == "echo-bot" and shown["version"] == "2" and shown["spec"]["instructions"].startswith("Echo")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (ECHO.replace("instructions:", "instructons:"), "instructons"),
        (ECHO.replace("model: {provider: echo, model: echo-1}", "model: {provider: echo, model: [1, 2]}"), "model"),
        (ECHO.replace("name: echo-bot", "name: Echo_Bot"), "name"),
        (
            ECHO.replace(
                "{provider: echo, model: echo-1}", "{provider: openai, model: gpt-4o, credentials: sk-live-123}"
            ),
            "credentials",
        ),
        (ECHO + "---\n" + ECHO, "more than one document"),
        ("name: [unclosed\n", "not valid YAML"),
        ("kind: Workflow\nname: x\nspec: {}\n", "kind"),
        ("", "no documents"),
    ],
    ids=[
        "unknown-field",
        "wrong-type",
        "invalid-name",
        "literal-credentials",
        "duplicate",
        "yaml-syntax",
        "wrong-kind",
        "empty",
    ],
)
def test_a_bad_manifest_is_one_line_and_applies_nothing(stigmer, manifest, text, expected):
    good_first = ECHO.replace("echo-bot", "first-bot") + "---\n" + text
    line = one_line_error(stigmer("apply", "-f", manifest(good_first if text else text)))
    assert expected in line
    assert "first-bot" not in stigmer("agent", "list").stdout, "an earlier document was applied"


def test_agent_delete_reports_on_stderr(stigmer, manifest):
    stigmer("apply", "-f", manifest(ECHO))
    deleted = stigmer("agent", "delete", "echo-bot")
    assert (deleted.exit_code, deleted.stdout, deleted.stderr) == (0, "", "agent instance echo-bot deleted\n")
    assert "NOT_FOUND" in one_line_error(stigmer("agent", "get", "echo-bot"))


def test_a_missing_file_is_one_line(stigmer, tmp_path):
    assert "cannot read" in one_line_error(stigmer("apply", "-f", str(tmp_path / "nope.yaml")))


def test_execute_runs_the_agent_and_records_the_execution(stigmer, manifest):
    stigmer("apply", "-f", manifest(ECHO))
    result = stigmer("agent", "execute", "echo-bot", "hello there")
    assert result.exit_code == 0 and result.stdout == "hello there\n"
    assert "running as" in result.stderr, "status goes to stderr"
    listed = json.loads(stigmer("execution", "list", "-o", "json").stdout)["executions"]
    assert len(listed) == 1 and listed[0]["status"]["phase"] == "EXECUTION_PHASE_SUCCEEDED"
    shown = stigmer("execution", "get", listed[0]["id"]).stdout
    assert "SUCCEEDED" in shown and "hello there" in shown


def test_detached_execution_can_be_cancelled_and_watched(stigmer, manifest):
    stigmer("apply", "-f", manifest(ECHO))
    execution_id = stigmer("agent", "execute", "echo-bot", "later", "--detach").stdout.strip()
    assert execution_id.startswith("exe_")
    assert stigmer("execution", "list", "--phase", "pending").stdout.count(execution_id) == 1
    assert stigmer("execution", "cancel", execution_id).exit_code == 0
    watched = stigmer("execution", "watch", execution_id).stdout.splitlines()
    assert watched == ["v2 CANCELLED: cancelled from the command line"]
    again = one_line_error(stigmer("execution", "cancel", execution_id))
    assert "FAILED_PRECONDITION" in again


def test_backend_errors_are_one_line_with_their_code(stigmer):
    assert one_line_error(stigmer("agent", "get", "nobody")).startswith("Error: NOT_FOUND: ")
    assert "INVALID_ARGUMENT" in one_line_error(stigmer("agent", "get", "Bad Name"))
    assert "NOT_FOUND" in one_line_error(stigmer("agent", "execute", "nobody", "hi"))


def test_execute_rejects_non_object_data(stigmer, manifest):
    stigmer("apply", "-f", manifest(ECHO))
    result = stigmer("agent", "execute", "echo-bot", "hi", "--data", "[1]")
    assert result.exit_code == 2 and "JSON object" in result.output


def test_execute_refuses_data_nested_ten_thousand_deep_without_a_traceback(stigmer, manifest):
    stigmer("apply", "-f", manifest(ECHO))
    deep = '{"a": ' + "[" * 10_000 + "]" * 10_000 + "}"
    result = stigmer("agent", "execute", "echo-bot", "hi", "--data", deep)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "Error: Invalid value for --data: nested too deeply to be read as JSON" in result.stderr


@pytest.mark.parametrize(
    ("data", "problem"),
    [('{"a": ' + "[" * 40 + "]" * 40 + "}", "must nest objects and lists at most 32 deep"), ('{"a": NaN}', "nan")],
    ids=["40 deep", "NaN"],
)
def test_execute_refuses_data_the_contract_does_not_take_in_one_line(stigmer, manifest, data, problem):
    stigmer("apply", "-f", manifest(ECHO))
    line = one_line_error(stigmer("agent", "execute", "echo-bot", "hi", "--data", data))
    assert line.startswith("Error: INVALID_ARGUMENT: input.data: ") and problem in line
    assert "echo-bot" not in stigmer("execution", "list").stdout, "a refused call writes nothing"


def test_structured_input_round_trips(stigmer, manifest):
    stigmer("apply", "-f", manifest(ECHO))
    result = stigmer("agent", "execute", "echo-bot", "hi", "--data", '{"city": "Zürich", "days": 3}', "-o", "json")
    final = json.loads(result.stdout)
    assert final["status"]["output"]["data"] == {"city": "Zürich", "days": 3}


def test_a_key_given_twice_is_an_error_naming_file_line_and_key(stigmer, tmp_path):
    manifest = tmp_path / "twice.yaml"
    manifest.write_text("name: first\nspec:\n  model: {provider: ollama, model: llama3}\nname: second\n")
    line = one_line_error(stigmer("apply", "-f", str(manifest)))
    assert line == f"Error: {manifest}: line 4: duplicate key 'name'"
    assert "first" not in stigmer("agent", "list").output and "second" not in stigmer("agent", "list").output


def test_a_manifest_nested_ten_thousand_deep_is_a_one_line_error(stigmer, tmp_path):
    manifest = tmp_path / "deep.yaml"
    manifest.write_text("name: deep\nspec: " + "[" * 10_000 + "]" * 10_000 + "\n")
    assert (
        one_line_error(stigmer("apply", "-f", str(manifest)))
        == f"Error: {manifest}: nested too deeply to be a manifest"
    )
