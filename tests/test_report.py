"""report.html and the nightly history: the page read back with a real HTML parser, the history
fed with earlier runs, and the end-of-run hook driven by a real pytest run."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from clustergate.config import ReportsSection
from clustergate.report.history import HistorySettings, archive, settings_from_config
from clustergate.report.render import write_report

ROOT = Path(__file__).parents[1]
VOID = {"meta", "link", "br", "hr", "img", "input", "col", "area", "base", "source", "wbr"}
NODES = ("ip-10-0-0-10.us-west-2.compute.internal", "ip-10-0-0-11.us-west-2.compute.internal")
FAILURE = (
    "share of the new cluster at step 50% is 61.0% [58.2%, 63.7%] after 1200 requests, "
    "outside 50% ± 3%\nrolled back to 25%\n" + "see the edge's access log for the split; " * 6
)


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list[Element] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.parts) + "".join(child.text for child in self.children)

    def iter(self, tag: str | None = None, **attrs: str) -> list[Element]:
        found = []
        for child in self.children:
            if (tag is None or child.tag == tag) and all(
                child.attrs.get(key.replace("_", "-")) == value for key, value in attrs.items()
            ):
                found.append(child)
            found += child.iter(tag, **attrs)
        return found

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


class _TreeBuilder(HTMLParser):
    """A document tree from the standard library's HTML tokenizer (void elements closed)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {key: value or "" for key, value in attrs})
        self.stack[-1].children.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Element(tag, {key: value or "" for key, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return
        raise AssertionError(f"</{tag}> closes no open element")

    def handle_data(self, data: str) -> None:
        self.stack[-1].parts.append(data)


def parse_html(text: str) -> Element:
    builder = _TreeBuilder()
    builder.feed(text)
    builder.close()
    assert [element.tag for element in builder.stack] == ["#document"], "unclosed elements"
    return builder.root


def _measurement(name: str, value: float, unit: str, **context: object) -> dict[str, Any]:
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "context": {k: str(v) for k, v in context.items()},
    }


def _check(
    nodeid: str, outcome: str = "passed", message: str = "", *measurements: dict[str, Any]
) -> dict[str, Any]:
    return {
        "nodeid": nodeid,
        "outcome": outcome,
        "duration_s": 1.25,
        "message": message,
        "markers": [nodeid.split("/")[1]],
        "measurements": list(measurements),
    }


def _summary(
    run_id: str = "cg-run-1", started: str = "2026-11-25T02:00:00+00:00", **scale: float
) -> dict[str, Any]:
    """A run of every suite; ``scale`` multiplies a measurement by name (a slower night)."""

    def m(name: str, value: float, unit: str, **context: object) -> dict[str, Any]:
        return _measurement(name, value * scale.get(name, 1.0), unit, **context)

    checks = [
        _check("suites/irsa/test_irsa_config.py::test_each_service_account_carries_its_role"),
        _check(
            "suites/dns/test_dns_nodelocal.py::test_latency_meets_the_slo_on_every_probed_node",
            "passed",
            "",
            *[
                m(f"dns_latency_{p}", base + index, "ms", node=node, queries=40)
                for index, node in enumerate(NODES)
                for p, base in (("p50", 4.0), ("p99", 20.0))
            ],
        ),
        _check(
            "suites/autoscaler/test_autoscaler_scaling.py::test_pending_pods_get_new_nodes",
            "passed",
            "",
            m("time_to_capacity", 40.0, "s", pods=4),
            m("nodes_added", 1, "nodes", asked=1),
            *[m("node_count", n, "nodes", t=t, ready=n) for t, n in ((0, 3), (35.5, 4), (90, 3))],
        ),
        _check(
            "suites/drain/test_drain.py::test_drain_keeps_the_budget_at_every_moment",
            "passed",
            "",
            m("drain_duration", 12.0, "s", node=NODES[0]),
            m("evictions_refused", 2, "count", node=NODES[0], budget="drain-budget"),
            m("min_availability", 3, "pods", budget=3, replicas=4),
        ),
        _check(
            "suites/cutover/test_cutover.py::test_each_step_gets_its_share_within_slo",
            "failed",
            FAILURE,
            *[
                m(
                    "cutover_step_new_share",
                    share,
                    "ratio",
                    step=step,
                    weight=w,
                    decision=decision,
                    low=f"{share - 0.03:.4f}",
                    high=f"{share + 0.03:.4f}",
                    target=w / 100,
                )
                for step, w, share, decision in (
                    (1, 10, 0.11, "pass"),
                    (2, 25, 0.24, "pass"),
                    (3, 50, 0.61, "fail"),
                )
            ],
            *[
                m(
                    "cutover_step_latency_p95",
                    base * (1.3 if backend == "new" else 1),
                    "ms",
                    step=step,
                    weight=w,
                    backend=backend,
                )
                for step, w in ((1, 10), (2, 25), (3, 50))
                for backend, base in (("old", 80.0), ("new", 80.0))
            ],
            m("requests_per_s", 400.0, "requests/s", weight=50),
        ),
        _check(
            "suites/upgrade/test_upgrade.py::test_nodegroup_upgrade_replaces_every_node",
            "skipped",
            "Skipped: disruptive: select -m signoff/nightly or pass --allow-disruptive",
        ),
    ]
    return {
        "started": started,
        "finished": started.replace("02:00:00", "02:07:30"),
        "exit_status": 1,
        "verdict": "not fit",
        "facts": {
            "cluster": "staging-eu",
            "target": "live",
            "run_id": run_id,
            "kubernetes_version": "v1.31.4-eks-2d5f260",
            "nodes": 3,
            "node_groups": ["ng-a", "ng-b"],
            "suites": ["irsa", "dns", "autoscaler", "drain", "upgrade", "cutover"],
            "disruptive_allowed": True,
        },
        "counts": {"passed": 4, "failed": 1, "skipped": 1},
        "checks": checks,
    }


def _passing(summary: dict[str, Any]) -> dict[str, Any]:
    passing = copy.deepcopy(summary)
    for check in passing["checks"]:
        if check["outcome"] == "failed":
            check["outcome"], check["message"] = "passed", ""
    passing["exit_status"], passing["verdict"] = 0, "fit"
    return passing


def _page(
    tmp_path: Path, summary: dict[str, Any], history: HistorySettings | None = None
) -> tuple[Element, dict[str, Any]]:
    path = tmp_path / "reports" / "report.html"
    judged = write_report(summary, path, history)
    return parse_html(path.read_text()), judged


def test_page_leads_with_the_verdict_then_each_suite_with_its_checks(tmp_path: Path) -> None:
    page, _ = _page(tmp_path, _summary())
    body = page.iter("body")[0]
    first = body.children[0]
    assert first.attrs["id"] == "verdict"
    assert first.attrs["data-verdict"] == "not fit"
    assert "NOT FIT" in first.text
    assert "cg-run-1" in first.text
    assert "7 min 30 s" in first.text
    assert {span.attrs["data-outcome"]: span.text for span in first.iter("span")} == {
        "failed": "1 failed",
        "passed": "4 passed",
        "skipped": "1 skipped",
    }
    facts = {
        row.iter("th")[0].text: row.iter("td")[0].text
        for row in page.iter("tr")
        if row.iter("th") and row.iter("td")
    }
    assert facts["Cluster"] == "staging-eu"
    assert facts["Node groups"] == "ng-a, ng-b"
    sections = page.iter("section")
    assert [s.attrs["data-suite"] for s in sections] == [
        "irsa",
        "dns",
        "autoscaler",
        "drain",
        "upgrade",
        "cutover",
    ]
    failure_links = page.iter("div", id="failures")[0].iter("a")
    assert [a.attrs["href"] for a in failure_links] == ["#check-4"]


def test_each_check_shows_outcome_duration_full_message_and_measurements(tmp_path: Path) -> None:
    page, _ = _page(tmp_path, _summary())
    cutover = page.iter("section", data_suite="cutover")[0]
    (check,) = cutover.iter("div", data_outcome="failed")
    assert check.attrs["data-nodeid"].endswith("::test_each_step_gets_its_share_within_slo")
    assert "1.2 s" in check.iter("span", **{"class": "duration"})[0].text
    assert check.iter("pre")[0].text == FAILURE
    rows = [[cell.text for cell in row.iter("td")] for row in check.iter("table")[0].iter("tr")][1:]
    assert [
        "cutover_step_new_share",
        "0.61",
        "ratio",
        "decision=fail, high=0.6400, low=0.5800, step=3, target=0.5, weight=50",
    ] in rows
    assert len(rows) == 10
    skipped = page.iter("div", data_outcome="skipped")[0]
    assert "--allow-disruptive" in skipped.iter("pre")[0].text


def test_each_kind_of_plot_is_drawn_in_its_suite_from_the_measurements(tmp_path: Path) -> None:
    page, _ = _page(tmp_path, _summary())
    where = {
        figure.attrs["data-plot"]: section.attrs["data-suite"]
        for section in page.iter("section")
        for figure in section.iter("figure")
    }
    assert where == {
        "share": "cutover",
        "latency": "cutover",
        "availability": "drain",
        "node_count": "autoscaler",
        "dns_latency": "dns",
    }
    for figure in page.iter("figure"):
        (svg,) = figure.iter("svg")
        assert svg.iter("path"), f"{figure.attrs['data-plot']} has nothing drawn"
        assert figure.iter("figcaption")[0].text


def test_availability_timeline_is_drawn_when_a_check_records_one(tmp_path: Path) -> None:
    summary = _summary()
    drain = summary["checks"][3]
    drain["measurements"] += [
        _measurement("available_pods", n, "pods", t=t, budget=3)
        for t, n in ((0, 4), (1.5, 3), (4, 4))
    ]
    page, _ = _page(tmp_path, summary)
    (figure,) = page.iter("figure", data_plot="availability")
    assert "over time" in figure.iter("figcaption")[0].text


def test_missing_or_malformed_measurements_leave_plots_out_without_error(tmp_path: Path) -> None:
    summary = _summary()
    for check in summary["checks"]:
        check["measurements"] = []
    summary["checks"][1]["measurements"] = [
        {"name": "dns_latency_p99", "value": "NaN", "unit": "ms", "context": {"node": "n1"}},
        {"value": 3, "unit": "ms"},
        _measurement("min_availability", 3, "pods", budget="drain-budget"),
    ]
    del summary["finished"]
    page, _ = _page(tmp_path, summary)
    assert page.iter("figure") == []
    assert "took -" in page.iter("div", id="verdict")[0].text
    assert len(page.iter("div", data_nodeid=summary["checks"][1]["nodeid"])) == 1


def _history(tmp_path: Path, runs: int = 7, fail: bool = False) -> HistorySettings:
    return HistorySettings(tmp_path / "history", runs=runs, ratio=1.5, fail=fail)


def _feed(history: HistorySettings, *scales: float, cluster: str = "staging-eu") -> None:
    for night, factor in enumerate(scales, start=1):
        earlier = _passing(
            _summary(f"cg-{cluster}-{night}", f"2026-11-{10 + night}T02:00:00+00:00")
        )
        earlier["facts"]["cluster"] = cluster
        for check in earlier["checks"]:
            for measurement in check["measurements"]:
                measurement["value"] *= factor
        archive(earlier, history)


def test_a_slower_run_is_flagged_against_the_median_of_the_history(tmp_path: Path) -> None:
    history = _history(tmp_path)
    _feed(history, 1.0, 1.0, 0.9, 1.1)
    slower = _passing(
        _summary("cg-slow", dns_latency_p99=1.8, time_to_capacity=2.1, drain_duration=1.3)
    )
    page, judged = _page(tmp_path, slower, history)

    regressed = {line.split(" ", 1)[0]: line for line in judged["regressions"]}
    assert sorted(regressed) == ["dns_latency_p99", "time_to_capacity"]
    assert regressed["dns_latency_p99"] == (
        "dns_latency_p99 of test_latency_meets_the_slo_on_every_probed_node: 37.8 ms against a "
        "median of 21 ms over 4 earlier run(s), 1.80x the median (lower is better; limit 1.5x)"
    )
    assert regressed["time_to_capacity"].startswith(
        "time_to_capacity of test_pending_pods_get_new_nodes: 84 s against a median of 40 s"
    )
    assert judged["exit_status"] == 0
    assert judged["verdict"] == "fit"
    assert judged["history"]["compared_with"] == [f"cg-staging-eu-{n}" for n in (1, 2, 3, 4)]

    warnings = page.iter("div", id="regressions")[0]
    assert "(warnings)" in warnings.text
    assert len(warnings.iter("li")) == 2
    flagged = [row.iter("td")[0].text for row in page.iter("tr") if "regressed" in row.classes()]
    assert sorted(flagged) == ["dns_latency_p99", "time_to_capacity"]
    assert page.iter("figure", data_plot="trends")
    assert sorted(p.name for p in history.dir.glob("*.json"))[-1].endswith("-cg-slow.json")


def test_regressions_fail_the_run_when_the_config_says_so(tmp_path: Path) -> None:
    history = _history(tmp_path, fail=True)
    _feed(history, 1.0, 1.0)
    page, judged = _page(tmp_path, _passing(_summary("cg-slow", time_to_capacity=3)), history)
    assert judged["exit_status"] == 1
    assert judged["verdict"] == "not fit"
    assert page.iter("div", id="verdict")[0].attrs["data-verdict"] == "not fit"
    assert "they fail this run" in page.iter("div", id="regressions")[0].text


def test_direction_follows_the_unit_and_other_units_are_not_compared(tmp_path: Path) -> None:
    history = _history(tmp_path)
    _feed(history, 1.0)
    run = _passing(
        _summary("cg-next", dns_latency_p99=0.3, evictions_refused=10, requests_per_s=0.5)
    )
    _, judged = _page(tmp_path, run, history)
    assert len(judged["regressions"]) == 1
    assert judged["regressions"][0].startswith("requests_per_s [weight=50]")
    assert "2.00x the median (higher is better" in judged["regressions"][0]


def test_history_uses_the_same_cluster_the_last_runs_and_only_passed_checks(tmp_path: Path) -> None:
    history = _history(tmp_path, runs=2)
    _feed(history, 0.1, 0.1)
    _feed(history, 1.0, 1.0, 1.0, cluster="prod-us")
    (history.dir / "20261101T000000-broken.json").write_text("{not json")
    failed = _passing(
        _summary("cg-failed-night", "2026-11-20T02:00:00+00:00", time_to_capacity=0.1)
    )
    failed["facts"]["cluster"] = "prod-us"
    failed["checks"][2]["outcome"] = "failed"
    archive(failed, history)

    run = _passing(_summary("cg-now", "2026-11-21T02:00:00+00:00"))
    run["facts"]["cluster"] = "prod-us"
    page, judged = _page(tmp_path, run, history)
    assert judged["history"]["compared_with"] == ["cg-prod-us-3", "cg-failed-night"]
    assert judged["regressions"] == []
    history_section = page.iter("section", data_suite="trends")[0]
    assert "median of the last 2 run(s)" in history_section.text


def test_unreadable_history_files_are_named_and_left_out(tmp_path: Path) -> None:
    history = _history(tmp_path)
    history.dir.mkdir()
    (history.dir / "20261101T000000-broken.json").write_text("{not json")
    page, judged = _page(tmp_path, _summary(), history)
    assert judged["history"]["compared_with"] == []
    text = page.iter("section", data_suite="trends")[0].text
    assert "this run starts the history" in text
    assert "20261101T000000-broken.json" in text


def test_history_settings_come_from_the_config_relative_to_the_reports_folder(
    tmp_path: Path,
) -> None:
    reports = ReportsSection(history_runs=3, regression_ratio=2.0, regressions_fail=True)
    settings = settings_from_config(reports, tmp_path / "reports")
    assert settings == HistorySettings(tmp_path / "reports" / "history", 3, 2.0, True)
    assert settings_from_config(reports, tmp_path / "reports", "/srv/nightly").dir == Path(
        "/srv/nightly"
    )


HOOKED_CONFTEST = """
import os
from pathlib import Path

import pytest

from clustergate.report.history import HistorySettings
from clustergate.results import Recorder, SummaryWriter


def pytest_configure(config):
    reports = Path(os.environ["REPORTS"])
    facts = {"cluster": "hooked", "target": "live", "run_id": os.environ["RUN_ID"]}
    history = HistorySettings(reports / "history", runs=3, ratio=1.5, fail=True)
    config.pluginmanager.register(SummaryWriter(reports / "summary.json", facts, history))


@pytest.fixture
def measure(request):
    return Recorder(request.node)
"""
HOOKED_TEST = """
import os

def test_resolves(measure):
    measure("dns_latency_p99", float(os.environ["P99"]), "ms", node="n1")
"""


def test_the_run_that_writes_summary_json_writes_the_report_and_fails_on_a_regression(
    tmp_path: Path,
) -> None:
    (tmp_path / "conftest.py").write_text(HOOKED_CONFTEST)
    (tmp_path / "test_hooked.py").write_text(HOOKED_TEST)
    reports = tmp_path / "reports"

    def run(run_id: str, p99: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-p",
                "no:locust",
                str(tmp_path),
            ],
            cwd=tmp_path,
            env={**os.environ, "REPORTS": str(reports), "RUN_ID": run_id, "P99": str(p99)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    first = run("cg-first", 10.0)
    assert first.returncode == 0, first.stdout + first.stderr
    second = run("cg-second", 30.0)
    assert second.returncode == 1, second.stdout + second.stderr
    summary = json.loads((reports / "summary.json").read_text())
    assert summary["verdict"] == "not fit"
    assert summary["regressions"][0].startswith("dns_latency_p99 of test_resolves: 30 ms")
    page = parse_html((reports / "report.html").read_text())
    assert page.iter("div", id="verdict")[0].attrs["data-verdict"] == "not fit"
    assert len(list((reports / "history").glob("*.json"))) == 2
