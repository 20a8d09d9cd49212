"""The pytest side of diagnostics on failure, ``--keep-on-failure`` and the evidence bundle.

Two plugins, registered by the run's setup:

- :class:`FailureDiagnostics`, on the process that runs the checks (each xdist worker): when a
  check fails (any phase, once per check), it tells the run context (so ``--keep-on-failure``
  keeps what the check created) and collects the diagnostics before the check's teardown. They
  travel with the test report to the controller (a report's extra attributes survive xdist).
- :class:`EvidenceWriter`, on the process that writes reports (the xdist controller): says
  which namespaces were kept and how to look at them and sweep them, and writes the bundle at
  the very end of the run (after junit.xml, summary.json and report.html), also on failure.
"""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clustergate import flaky
from clustergate.diagnostics import DEFAULT_LIMITS, Limits, collect
from clustergate.evidence import write_bundle
from clustergate.redact import Redactor
from clustergate.results import DIAGNOSTICS
from clustergate.runctx import KEPT_LABEL, RunContext

log = logging.getLogger("clustergate.evidence")

#: Attribute of a failed check's test report: the namespace kept for it.
KEPT_NAMESPACE = "clustergate_kept_namespace"
_DIAGNOSED = pytest.StashKey[bool]()


class FailureDiagnostics:
    def __init__(
        self, run_of: Callable[[pytest.Item], RunContext | None], limits: Limits = DEFAULT_LIMITS
    ) -> None:
        self.run_of = run_of
        self.limits = limits

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Iterator[None]:
        report: pytest.TestReport = yield  # type: ignore[misc]
        # A failed attempt of a flaky check that will be retried is not the check's failure.
        retried = getattr(report, flaky.RETRY, None)
        if not report.failed or retried or item.stash.get(_DIAGNOSED, False):
            return report  # type: ignore[return-value]
        item.stash[_DIAGNOSED] = True
        run = self.run_of(item)
        if run is None:
            return report  # type: ignore[return-value]
        run.check_failed(item.nodeid)
        # Failed in setup before its own scope opened: what it named is not known yet.
        named = run.named(include_check=run.in_check or call.when != "setup")
        error = call.excinfo.value if call.excinfo is not None else None
        try:
            diagnostics = collect(run.cluster, run.namespace, named, error, self.limits)
        except Exception as failure:  # the check's own failure is what must be reported
            diagnostics = {"namespace": run.namespace, "problems": [f"not collected: {failure}"]}
        setattr(report, DIAGNOSTICS, diagnostics)
        if run.keep_on_failure:
            setattr(report, KEPT_NAMESPACE, run.namespace)
        return report  # type: ignore[return-value]


class EvidenceWriter:
    def __init__(
        self,
        reports_dir: Path,
        run_id: str,
        facts: dict[str, Any],
        identities: dict[str, Any],
        redactor: Redactor,
        access: list[str],
        junit: Path | None,
    ) -> None:
        self.reports_dir = reports_dir
        self.run_id = run_id
        self.facts = facts
        self.identities = identities
        self.redactor = redactor
        #: kubectl/pytest arguments that reach this cluster (--kubeconfig, --context).
        self.access = access
        self.junit = junit
        self.kept: dict[str, list[str]] = {}
        self.bundle: Path | None = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        namespace = getattr(report, KEPT_NAMESPACE, None)
        if namespace:
            self.kept.setdefault(namespace, []).append(report.nodeid)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        try:
            summary = json.loads((self.reports_dir / "summary.json").read_text())
        except (OSError, ValueError):
            summary = {}
        try:
            self.bundle = write_bundle(
                self.reports_dir,
                self.run_id,
                self.facts,
                self.identities,
                summary.get("checks", []),
                self.redactor,
                self.junit,
            )
        except OSError as error:
            log.error("the evidence bundle was not written: %s", error)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        write = terminalreporter.write_line
        access = " ".join(shlex.quote(arg) for arg in self.access)
        for namespace, checks in self.kept.items():
            write(
                f"clustergate: kept namespace {namespace} (--keep-on-failure) for: "
                f"{', '.join(dict.fromkeys(checks))}"
            )
            write(f"  look:  kubectl {access} -n {namespace} get events,pods,deployments,pdb")
            write(f"         kubectl {access} -n {namespace} describe pods")
            write(
                f"  sweep: pytest --sweep {access}   (the namespace is labelled "
                f"{KEPT_LABEL}=true: the sweep removes it whatever its age)"
            )
        if self.bundle is not None:
            write(f"clustergate: evidence bundle {self.bundle}")
