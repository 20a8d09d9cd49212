"""``report.html``: one self-contained page (inline CSS and SVG, no external resource) that a
person opens from a pipeline artifact. The verdict comes first, then each suite with its plots
and its checks, then the comparison with earlier runs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from clustergate.report import plots
from clustergate.report.history import HistorySettings, HistoryView, archive, judge
from clustergate.report.measurements import Point, points, short_name, suite_of

TEMPLATE = "report.html.j2"
OUTCOME_ORDER = ("failed", "error", "passed", "skipped")
FAILING = ("failed", "error")
SUITE_QUESTIONS = {
    "hygiene": "Is the cluster clean: nothing left by dead runs, no node kept from pods unasked?",
    "irsa": "Does each pod get exactly the AWS role of its service account, and nothing else?",
    "dns": "Do pods resolve through NodeLocal DNSCache on every node, fast, and keep resolving?",
    "autoscaler": "Does the cluster grow when pods are pending and shrink when nodes are idle?",
    "drain": "Can a node be drained without ever breaking a PodDisruptionBudget?",
    "upgrade": "Does a node-group upgrade replace every node while workloads stay within budget?",
    "cutover": "Does each traffic step get its share, within SLO, and roll back when it doesn't?",
}
FACTS = (
    ("cluster", "Cluster"),
    ("target", "Target"),
    ("kubernetes_version", "Kubernetes"),
    ("nodes", "Nodes"),
    ("node_groups", "Node groups"),
    ("context", "Context"),
    ("server", "API server"),
    ("aws_caller", "AWS caller"),
    ("suites", "Suites selected"),
    ("disruptive_allowed", "Disruptive checks allowed"),
)


@dataclass(frozen=True)
class MeasurementRow:
    name: str
    value: str
    unit: str
    context: str


@dataclass(frozen=True)
class DiagnosticsView:
    """A failed check's diagnostics as table rows (clustergate/diagnostics.py makes them)."""

    namespace: str
    named: list[str]
    #: (last seen, type, reason, object, count, message)
    events: list[tuple[str, ...]]
    #: (pod, phase, node, conditions not True, containers)
    pods: list[tuple[str, ...]]
    #: (pod, log tail)
    logs: list[tuple[str, str]]
    #: (node, conditions, cordon and taints)
    nodes: list[tuple[str, ...]]
    #: (operation, code, message, HTTP status, request id, probe pod that got it)
    aws: list[tuple[str, ...]]
    problems: list[str]

    @property
    def headline(self) -> str:
        parts = [
            f"{len(self.events)} event(s)",
            f"{len(self.pods)} pod(s)",
            f"{len(self.nodes)} node(s)",
        ]
        if self.aws:
            parts.append(f"{len(self.aws)} AWS error(s)")
        return f"namespace {self.namespace}: " + ", ".join(parts)


@dataclass(frozen=True)
class CheckView:
    anchor: str
    nodeid: str
    name: str
    outcome: str
    duration: str
    message: str
    measurements: list[MeasurementRow]
    diagnostics: DiagnosticsView | None = None
    #: Each retried attempt of a check marked flaky: "attempt 1 (call): <error>".
    retries: tuple[str, ...] = ()
    flaky: bool = False


@dataclass
class SuiteView:
    name: str
    question: str
    checks: list[CheckView] = field(default_factory=list)
    plots: list[plots.Plot] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return _counts(check.outcome for check in self.checks)


def _counts(outcomes: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome] = counts.get(outcome, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: _outcome_rank(item[0])))


def _outcome_rank(outcome: str) -> int:
    return OUTCOME_ORDER.index(outcome) if outcome in OUTCOME_ORDER else len(OUTCOME_ORDER)


def _number(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)


def _seconds(value: float) -> str:
    if value < 1:
        return f"{1000 * value:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{int(value // 60)} min {value % 60:.0f} s"


def _duration(summary: Mapping[str, Any]) -> str:
    try:
        started = datetime.fromisoformat(str(summary["started"]))
        finished = datetime.fromisoformat(str(summary["finished"]))
    except (KeyError, ValueError):
        return "-"
    return _seconds((finished - started).total_seconds())


def _fact(value: object) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value) or "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "-" if value in (None, "") else str(value)


def _text(value: object) -> str:
    return "-" if value in (None, "") else str(value)


def _container_text(container: Mapping[str, Any]) -> str:
    def state(item: Mapping[str, Any] | None) -> str:
        if not item:
            return "-"
        details = [f"{key}={value}" for key, value in item.items() if key != "state" and value]
        return f"{item['state']}" + (f" ({', '.join(details)})" if details else "")

    text = (
        f"{container.get('name')}: ready={container.get('ready')}, "
        f"restarts={container.get('restart_count', 0)}, {state(container.get('state'))}"
    )
    if container.get("last_termination"):
        text += f"; last termination {state(container.get('last_termination'))}"
    return text


def _conditions_text(conditions: Sequence[Mapping[str, Any]], normal: Mapping[str, str]) -> str:
    shown = [
        f"{c.get('type')}={c.get('status')}"
        + (f" {c.get('reason')}" if c.get("reason") else "")
        + (f": {c.get('message')}" if c.get("message") else "")
        for c in conditions
        if c.get("status") != normal.get(str(c.get("type")), "True")
    ]
    return "; ".join(shown) or "all normal"


#: Node conditions whose normal status is False (every other, e.g. Ready, is normally True).
NODE_PRESSURE_CONDITIONS = {
    name: "False"
    for name in ("MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable")
}


def diagnostics_view(diagnostics: Mapping[str, Any]) -> DiagnosticsView:
    pods = list(diagnostics.get("pods", []))
    return DiagnosticsView(
        namespace=_text(diagnostics.get("namespace")),
        named=[str(name) for name in diagnostics.get("named", [])],
        events=[
            tuple(
                _text(event.get(key))
                for key in ("last", "type", "reason", "object", "count", "message")
            )
            for event in diagnostics.get("events", [])
        ],
        pods=[
            (
                f"{pod.get('namespace')}/{pod.get('name')}"
                + (" (deleted)" if pod.get("gone") else ""),
                _text(pod.get("phase")),
                _text(pod.get("node")),
                _conditions_text(pod.get("conditions", []), {}),
                "\n".join(_container_text(c) for c in pod.get("containers", [])) or "-",
            )
            for pod in pods
        ],
        logs=[
            (f"{pod.get('namespace')}/{pod.get('name')}", str(pod["log_tail"]))
            for pod in pods
            if pod.get("log_tail")
        ],
        nodes=[
            (
                _text(node.get("name")),
                _conditions_text(node.get("conditions", []), NODE_PRESSURE_CONDITIONS),
                ", ".join(
                    (
                        [
                            "cordoned"
                            + (f" by {node['cordoned_by']}" if node.get("cordoned_by") else "")
                        ]
                        if node.get("unschedulable")
                        else []
                    )
                    + list(node.get("taints", []))
                )
                or "-",
            )
            for node in diagnostics.get("nodes", [])
        ],
        aws=[
            tuple(
                _text(error.get(key))
                for key in ("operation", "code", "message", "http_status", "request_id", "pod")
            )
            for error in diagnostics.get("aws_errors", [])
        ],
        problems=[str(problem) for problem in diagnostics.get("problems", [])],
    )


def _check_view(check: Mapping[str, Any], found: Sequence[Point], anchor: str) -> CheckView:
    nodeid = str(check.get("nodeid", ""))
    rows = [
        MeasurementRow(
            p.name,
            _number(p.value),
            p.unit,
            ", ".join(f"{key}={value}" for key, value in sorted(p.context.items())),
        )
        for p in found
        if p.check == nodeid
    ]
    return CheckView(
        anchor,
        nodeid,
        short_name(nodeid),
        str(check.get("outcome", "?")),
        _seconds(float(check.get("duration_s", 0.0))),
        str(check.get("message", "")),
        rows,
        diagnostics_view(check["diagnostics"]) if check.get("diagnostics") else None,
        tuple(
            f"attempt {retry.get('attempt', '?')} ({retry.get('when', '?')}): "
            f"{retry.get('error', '')}"
            for retry in check.get("retries", [])
        ),
        bool(check.get("flaky")),
    )


def suite_views(summary: Mapping[str, Any]) -> list[SuiteView]:
    """The suites of the run in the order they were selected, failures first within each."""
    known = list(summary.get("facts", {}).get("suites", []))
    found = points(summary)
    suites: dict[str, SuiteView] = {}
    for index, check in enumerate(summary.get("checks", [])):
        name = suite_of(check, known)
        suite = suites.setdefault(name, SuiteView(name, SUITE_QUESTIONS.get(name, "")))
        suite.checks.append(_check_view(check, found, f"check-{index}"))
    for suite in suites.values():
        suite.checks.sort(key=lambda check: _outcome_rank(check.outcome))
        suite.plots = plots.suite_plots(p for p in found if p.suite == suite.name)
    order = {name: index for index, name in enumerate(known)}
    return sorted(
        suites.values(), key=lambda suite: (order.get(suite.name, len(order)), suite.name)
    )


def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("clustergate.report", "templates"),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["svg"] = Markup
    return environment


def render(summary: Mapping[str, Any], history: HistoryView | None = None) -> str:
    """The page for a (judged) summary; ``history`` adds the comparison with earlier runs."""
    facts = summary.get("facts", {})
    comparisons = history.comparisons if history else []
    run_id = str(facts.get("run_id", ""))
    suites = suite_views(summary)
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(
            cluster=str(facts.get("cluster", "cluster")),
            started=str(summary.get("started", "-")),
            exit_status=str(summary.get("exit_status", "-")),
            verdict=str(summary.get("verdict", "not fit")),
            run_id=run_id,
            duration=_duration(summary),
            counts=_counts(check.get("outcome", "?") for check in summary.get("checks", [])),
            facts=[(label, _fact(facts[key])) for key, label in FACTS if key in facts],
            suites=suites,
            failures=[
                (suite.name, check)
                for suite in suites
                for check in suite.checks
                if check.outcome in FAILING
            ],
            history=history,
            regressions=history.regressions if history else [],
            trend=plots.trends(comparisons),
            number=_number,
        )
    )


def write_report(
    summary: Mapping[str, Any], path: Path, history: HistorySettings | None = None
) -> dict[str, Any]:
    """Write ``report.html`` for a run and, with ``history``, compare the run with earlier runs
    and keep it there. Returns the summary with the comparison added (``regressions``; with
    ``history.fail`` a regression turns a passing run into a failing one)."""
    view = None
    judged = dict(summary)
    if history is not None:
        judged, view = judge(summary, history)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(judged, view))
    if history is not None:
        archive(judged, history)
    return judged
