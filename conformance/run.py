"""One active conformance run: its event loop, its target, and the tally of what each test did.

The plugin (``plugin``) creates a ``ConformanceRun`` when a run is active, keeps
it in ``config.stash[RUN]`` for the fixtures (``fixtures``, ``target_backend``)
and registers it for the hooks it implements: stable ids, gating, known
failures, the preflight and the report. It lives apart from the plugin so the
fixtures can reach it without importing the module that registers them.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
from collections import Counter, defaultdict
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .ids import conformance_id
from .suite import SUITE_VERSION

__all__ = ["RUN", "ConformanceRun"]

if TYPE_CHECKING:
    from stigmer_backend.gen.stigmer.backend import v1 as pb

    from .client import BackendUnderTest
    from .report import Failure
    from .targets import Target

_ID = pytest.StashKey[str]()
_KNOWN = pytest.StashKey[str]()
RUN = pytest.StashKey["ConformanceRun"]()


class ConformanceRun:
    """State of one active conformance session: the loop, the target, the tally."""

    def __init__(self, config: pytest.Config) -> None:
        from .targets import Options

        token = None
        token_file = config.getoption("stigmer_token_file")
        if token_file:
            token = Path(token_file).read_text().strip()
        token = token or os.environ.get("STIGMER_CONFORMANCE_TOKEN") or None
        self.options = Options(
            target=config.getoption("stigmer_target"),
            server_command=config.getoption("stigmer_server_command"),
            adapter=config.getoption("stigmer_adapter"),
            ca_file=config.getoption("stigmer_ca"),
            tls=config.getoption("stigmer_tls"),
            token=token,
        )
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.target: Target | None = None
        self.info: pb.GetBackendInfoResponse | None = None
        # id(backend) -> (backend, its GetBackendInfoResponse)
        self._infos: dict[int, tuple[BackendUnderTest, pb.GetBackendInfoResponse]] = {}
        self.outcomes: dict[str, str] = {}
        self.failures: dict[str, Failure] = {}
        self.preflight_failed = False
        self.patterns = _read_patterns(config.getoption("stigmer_known_failures"))

    # -- the target ---------------------------------------------------------------------------

    def open(self) -> Target | None:
        """The command-line target, opened on first use; None when the caller's ``backend`` fixture is the target."""
        if self.target is None and (self.options.target or self.options.server_command):
            from .targets import open_target

            target = self.target = self.loop.run_until_complete(open_target(self.options))
            self.backend_info(target.backend)
        return self.target

    def backend_info(self, backend: BackendUnderTest) -> pb.GetBackendInfoResponse:
        """``GetBackendInfo`` of ``backend``, asked once per backend object; the first answer goes in the summary."""
        known = self._infos.get(id(backend))
        if known is None:
            from stigmer_backend.gen.stigmer.backend import v1 as pb

            info = self.loop.run_until_complete(
                asyncio.wait_for(backend.get_backend_info(pb.GetBackendInfoRequest()), 30)
            )
            known = self._infos[id(backend)] = (backend, info)  # the backend is kept, so its id stays unique
            if self.info is None:
                self.info = info
        return known[1]

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """The preflight: the target must answer GetBackendInfo before hundreds of tests ask it anything."""
        if session.config.option.collectonly or not session.items:
            return
        if not (self.options.target or self.options.server_command):
            return
        from .report import preflight_problem

        described = self.options.target or self.options.server_command or ""
        try:
            target = self.open()
        except Exception as error:  # whatever went wrong, one line says it; nothing else runs
            self.preflight_failed = True
            from .targets import TargetError

            if isinstance(error, TargetError):
                raise pytest.UsageError(str(error)) from None
            tls = bool(self.options.tls or self.options.ca_file)
            raise pytest.UsageError(
                preflight_problem(described, error, tls=tls, token=bool(self.options.token))
            ) from None
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            info = self.info
            assert target is not None and info is not None  # opening a target asks its GetBackendInfo
            reporter.write_line(
                f"stigmer conformance {SUITE_VERSION}: {len(session.items)} tests against {target.description} "
                f"(contract {info.contract_version}, {info.backend_kind} {info.backend_version})".replace("  ", " ")
            )

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.target is not None:
            self.loop.run_until_complete(self.target.close())
        self.loop.close()
        report = self.config.getoption("stigmer_json_report")
        if report:
            Path(report).write_text(json.dumps(self.summary(), indent=2) + "\n")

    # -- ids, gating, known failures ----------------------------------------------------------

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            test_id = conformance_id(item)
            item.stash[_ID] = test_id
            item.user_properties.append(("conformance_id", test_id))
            pattern = next((p for p in self.patterns if fnmatch.fnmatchcase(test_id, p)), None)
            if pattern is not None:
                item.stash[_KNOWN] = pattern
                item.add_marker(pytest.mark.xfail(strict=True, reason=f"known failure ({pattern})"))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if report.skipped and not hasattr(report, "wasxfail"):
            reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""
            if "optional:" not in reason:
                report.outcome = "failed"
                report.longrepr = f"required behaviour was skipped ({reason}); only optional features may be skipped"
        if report.when == "call" or report.outcome != "passed":
            test_id = item.stash.get(_ID, item.nodeid)
            self.outcomes[test_id] = _outcome(report)
            if report.failed and test_id not in self.failures:
                self.failures[test_id] = _failure(test_id, report, call)
        return report

    # -- reporting ----------------------------------------------------------------------------

    def pytest_report_teststatus(self, report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, str] | None:
        if not config.getoption("stigmer_quiet"):
            return None
        if report.when == "call" or report.outcome != "passed":
            return report.outcome, "", ""  # counted as usual, but no progress letter: the report says it all
        return "", "", ""

    def summary(self) -> dict[str, Any]:
        per_area: dict[str, Counter[str]] = defaultdict(Counter)
        for test_id, outcome in self.outcomes.items():
            per_area[test_id.split("/", 1)[0]][outcome] += 1
        totals: Counter[str] = Counter(self.outcomes.values())
        info = self.info
        return {
            "suite_version": SUITE_VERSION,
            "contract_version": getattr(info, "contract_version", None),
            "target": self.target.description if self.target is not None else self.options.target or "backend fixture",
            "backend_kind": getattr(info, "backend_kind", None),
            "backend_version": getattr(info, "backend_version", None),
            "capabilities": sorted(f"CAPABILITY_{self._capability_name(c)}" for c in getattr(info, "capabilities", [])),
            "totals": dict(totals),
            "categories": {area: dict(counts) for area, counts in sorted(per_area.items())},
            "failed": sorted(i for i, o in self.outcomes.items() if o == "failed"),
            "failures": [
                {"id": f.test_id, "reason": f.reason, "clause": f.clause}
                for f in sorted(self.failures.values(), key=lambda f: f.test_id)
                if self.outcomes.get(f.test_id) == "failed"
            ],
            "conformant": totals["failed"] == 0 and bool(self.outcomes),
        }

    @staticmethod
    def _capability_name(value: int) -> str:
        from stigmer_backend.gen.stigmer.backend import v1 as pb

        try:
            return pb.Capability(value).name
        except ValueError:
            return str(value)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.preflight_failed:
            return
        from .report import area_table, failure_lines

        summary = self.summary()
        failed = [f for f in self.failures.values() if self.outcomes.get(f.test_id) == "failed"]
        terminalreporter.write_line("")
        for line in [*failure_lines(failed), *([""] if failed else []), *area_table(summary["categories"])]:
            terminalreporter.write_line(line)

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """The verdict, after everything pytest prints (its own counts line included), so it is the last line."""
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if self.preflight_failed or reporter is None or config.option.collectonly:
            return
        summary = self.summary()
        totals = summary["totals"]
        counts = ", ".join(f"{totals[k]} {k}" for k in ("passed", "failed", "skipped", "known-failure") if k in totals)
        verdict = "CONFORMANT" if summary["conformant"] else "NOT CONFORMANT"
        reporter.write_line(
            f"stigmer conformance {summary['suite_version']} against {summary['target']} "
            f"(contract {summary['contract_version']}, {summary['backend_kind']}): "
            f"{counts or 'nothing ran'} — {verdict}"
        )


def _failure(test_id: str, report: pytest.TestReport, call: pytest.CallInfo[None]) -> Failure:
    from .report import Failure, clause_for, failure_reason, one_line

    if "XPASS" in str(report.longrepr):
        reason = "listed in --known-failures, but it passed (remove it from the list)"
    elif isinstance(report.longrepr, str):  # set above: a required test was skipped
        reason = one_line(report.longrepr)
    elif call.excinfo is not None:
        reason = failure_reason(call.excinfo)
    else:
        reason = one_line(str(report.longrepr))
    return Failure(test_id, reason, clause_for(test_id))


def _outcome(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return "known-failure" if report.skipped else "failed"
    return report.outcome


def _read_patterns(path: str | None) -> list[str]:
    if not path:
        return []
    lines = Path(path).read_text().splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]
