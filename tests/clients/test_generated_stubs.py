"""The committed Go and TypeScript stubs are what ``buf generate`` makes from ``proto/`` today.

Like the Python drift check in ``tests/contract``: a proto change without
regenerated example stubs fails here, naming the template to run.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.clients.conftest import GO_CLIENT, REPO, TS_CLIENT, require_go, require_ts_client
from tests.conftest import toolchain_env
from tests.contract.test_toolchain import tree_differences

TEMPLATES = {
    # template: (committed stubs, relative to the repository)
    "buf.gen.go.yaml": GO_CLIENT / "gen",
    "buf.gen.ts.yaml": TS_CLIENT / "src/gen",
}


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_committed_stubs_match_a_fresh_generation(template, buf, tmp_path):
    if template == "buf.gen.go.yaml":
        require_go()
        for plugin in ("protoc-gen-go", "protoc-gen-go-grpc"):
            if shutil.which(plugin) is None:
                pytest.skip(f"Go stubs: install {plugin} (scripts/setup does, as root)")
    else:
        require_ts_client()
    result = subprocess.run(
        [buf, "generate", "--template", template, "--output", str(tmp_path)],
        cwd=REPO,
        env=toolchain_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    committed = TEMPLATES[template]
    differences = tree_differences(committed, tmp_path / committed.relative_to(REPO))
    assert not differences, f"stale stubs; run `buf generate --template {template}`: " + ", ".join(differences)


def test_the_go_example_is_gofmt_clean():
    require_go()
    result = subprocess.run(["gofmt", "-l", str(GO_CLIENT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "", "run gofmt -w on: " + result.stdout
