"""The pre-commit hooks run the pinned tools this checkout installs, and nothing from the network."""

import shlex

import yaml

from tests.conftest import REPO


def test_every_hook_is_local_and_its_tool_is_installed():
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    assert {repo["repo"] for repo in config["repos"]} == {"local"}
    assert {"ruff-check", "ruff-format", "buf-format", "buf-lint"} <= {hook["id"] for hook in hooks}
    for hook in hooks:
        tool = REPO / shlex.split(hook["entry"])[0]
        assert tool.is_file(), f"{hook['id']}: {tool} is not installed by scripts/setup"
        for path in shlex.split(hook["entry"])[1:]:
            if path.startswith("tests/"):
                assert (REPO / path).is_file(), f"{hook['id']} runs {path}, which does not exist"
