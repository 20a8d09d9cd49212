"""The fault matrix: for every named twin fault, which checks must fail and why (issue 12).

A row's fault is either a twin switch (``clustergate/twin/faults.py``, ``--fault NAME`` at
start-up) or an operator fault (``tests/operator_faults.py``): a change made through the API
with kubectl or boto3 against the started twin, as an operator would make the mistake. The
twin's switches are faults of the twin's own components; everything an operator can break
through a real configuration surface belongs in the second kind.

A row says: with FAULT on, the checks named by ``must_fail`` (node-id fragments) fail
with a message containing ``cause``, and every other selected check of the same suite passes (or
is skipped, e.g. Karpenter checks when the config says Cluster Autoscaler).

Rows are run in GROUPS, one twin per group, so the matrix fits CI's budget: a group holds faults
that each break a different suite, and the suites of the group run once against a twin with all
of the group's faults on. This is sound only when a fault leaves the other suites of its group
alone, so the grouping follows what each fault really touches:

- AWS/IAM faults (irsa-*, imds-hop-limit-2) touch only the irsa suite: IAM trust and instance
  metadata are used by nothing else.
- DNS faults touch only how pods resolve names; the other suites' pods do not resolve names.
- autoscaler faults touch node counts; they share a group with dns/irsa faults only (the upgrade
  suite counts a node group's nodes, the drain suite places pods on nodes).
- upgrade faults run last in their twin (suites run in path order, upgrade after the others)
  and leave nodes broken, so they share a group with suites that run before upgrade.
- cutover faults touch only the edge's traffic split and backends.
- eviction-ignores-pdb breaks every eviction: drain, but also the upgrade's drains and the
  autoscaler's scale-down. Its group runs drain and no suite that evicts.
- webhook-off breaks only pod identity injection (irsa); it can share with drain and cutover.
- kubelet-slow-ready slows every pod of every suite: alone in its group.
- operator faults follow the same rule (one fault per suite in a group, touching only its
  suite). Their ``apply`` steps run, in the group's order, after the twin started and before
  the suites.

The runner (``run_group``) starts the twin with ``tests.conftest.start_twin``, applies the
group's operator faults, runs the group's suites through ``RunningTwin.pytest`` and judges
each row from the run's ``summary.json``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clustergate.twin.faults import FAULTS
from tests.conftest import ROOT, RunningTwin, start_twin, stop_twin
from tests.operator_faults import OPERATOR_FAULTS, Operator, StepError

PROFILES = ("gate", "signoff", "nightly")
#: A group's pytest run may take this long (it is killed and reported after).
GROUP_TIMEOUT_S = 900


@dataclass(frozen=True)
class Row:
    fault: str
    suite: str
    #: node-id fragment of each check that must fail ("test_file.py::test_name") → a fragment
    #: (case-insensitive) its failure message must contain: the cause, as the check names it.
    must_fail: tuple[tuple[str, str], ...]
    #: the lowest profile that selects every check in must_fail.
    profile: str = "gate"


@dataclass(frozen=True)
class Group:
    name: str
    faults: tuple[str, ...]
    #: nodes of the twin for this group (default: the twin's default of 3)
    nodes: int = 3
    #: run by the slow self-tests (tox -e tests-nightly) only: a twin of its own for rows
    #: no CI group has room for, too slow for every CI run
    slow: bool = False


_IRSA_CONFIG = "suites/irsa/test_irsa_config.py::"
_IRSA_PODS = "suites/irsa/test_irsa_pods.py::"
_DNS = "suites/dns/test_dns_nodelocal.py::"
_SCALING = "suites/autoscaler/test_autoscaler_scaling.py::"
_DRAIN = "suites/drain/test_drain.py::"
_UPGRADE = "suites/upgrade/test_upgrade.py::"
_STEPS = "suites/cutover/test_cutover.py::test_each_cutover_step_gets_its_share_within_slo"

_GRANTED = "was GRANTED"
_SCALE = _SCALING + "test_pending_pods_get_new_nodes_and_idle_nodes_go_in_time"
_ROLL = _UPGRADE + "test_nodegroup_upgrade_replaces_every_node_within_budget"
_DRAIN_BUDGET = _DRAIN + "test_drain_keeps_the_budget_at_every_moment"
_DRAIN_BLOCKED = _DRAIN + "test_drain_blocked_by_budget_times_out_and_restores_the_node"
_CACHE_READY = _DNS + "test_cache_runs_ready_on_every_node"
_THROUGH_CACHE = _DNS + "test_queries_go_through_each_nodes_own_cache"
_NAMES = _DNS + "test_names_resolve_on_every_probed_node"
_MODE = _DNS + "test_cache_mode_matches_the_cluster_dns_address"
_LATENCY = _DNS + "test_latency_meets_the_slo_on_every_probed_node"

ROWS: tuple[Row, ...] = (
    Row(
        "irsa-wildcard-trust",
        "irsa",
        (
            (
                _IRSA_CONFIG + "test_each_trust_policy_admits_exactly_its_service_account",
                '"system:serviceaccount:*"',
            ),
            (_IRSA_PODS + "test_each_pod_is_refused_every_other_mapped_role", _GRANTED),
            (
                _IRSA_PODS + "test_same_named_service_account_in_another_namespace_is_refused",
                _GRANTED,
            ),
        ),
    ),
    Row(
        "irsa-no-audience",
        "irsa",
        ((_IRSA_CONFIG + "test_each_trust_policy_admits_exactly_its_service_account", ":aud"),),
    ),
    Row(
        "irsa-role-admin",
        "irsa",
        ((_IRSA_PODS + "test_configured_calls_are_allowed_and_denied", "must be denied"),),
    ),
    Row(
        "imds-hop-limit-2",
        "irsa",
        (
            (_IRSA_PODS + "test_pod_without_a_role_gets_no_aws_credentials", "hop limit"),
            (_IRSA_PODS + "test_pod_cannot_reach_node_credentials_through_imds", "hop limit"),
        ),
    ),
    Row(
        "webhook-off",
        "irsa",
        (
            (_IRSA_PODS + "test_each_pod_gets_the_webhook_injection", "did not mutate the pod"),
            (_IRSA_PODS + "test_each_pod_assumes_exactly_its_role", "AWS_ROLE_ARN is not set"),
            (_IRSA_PODS + "test_each_pod_is_refused_every_other_mapped_role", "did not mutate"),
            (
                _IRSA_PODS + "test_same_named_service_account_in_another_namespace_is_refused",
                "AWS_ROLE_ARN is not set",
            ),
            (
                _IRSA_PODS + "test_configured_calls_are_allowed_and_denied",
                "AWS_ROLE_ARN is not set",
            ),
        ),
    ),
    Row(
        "nodelocal-missing-on-node",
        "dns",
        (
            (_DNS + "test_cache_runs_ready_on_every_node", "no node-local-dns pod"),
            (_DNS + "test_queries_go_through_each_nodes_own_cache", "no node-local-dns pod"),
        ),
    ),
    Row(
        "dns-bypass-cache",
        "dns",
        ((_DNS + "test_queries_go_through_each_nodes_own_cache", "must rise by at least"),),
    ),
    Row(
        "dns-slow-cache",
        "dns",
        ((_DNS + "test_latency_meets_the_slo_on_every_probed_node", "p50"),),
    ),
    Row("autoscaler-stuck", "autoscaler", ((_SCALE, "scaleUp NoActivity"),), "nightly"),
    Row("autoscaler-slow", "autoscaler", ((_SCALE, "scaleUp InProgress"),), "nightly"),
    Row("scale-down-never", "autoscaler", ((_SCALE, "idle nodes were not removed"),), "nightly"),
    Row(
        "eviction-ignores-pdb",
        "drain",
        (
            (_DRAIN_BUDGET, "does not enforce PodDisruptionBudgets"),
            (_DRAIN_BLOCKED, "without consulting the budget"),
        ),
        "signoff",
    ),
    Row("upgrade-skips-drain", "upgrade", ((_ROLL, "not drained"),), "nightly"),
    Row("upgrade-stuck", "upgrade", ((_ROLL, "NodeCreationFailure"),), "nightly"),
    Row("kubelet-slow-ready", "drain", ((_DRAIN_BUDGET, "slow to start"),), "signoff"),
    Row("cutover-skewed-split", "cutover", ((_STEPS, "traffic split off target"),), "signoff"),
    Row("new-backend-errors", "cutover", ((_STEPS, "error rate"),), "signoff"),
    Row("new-backend-slow", "cutover", ((_STEPS, "significantly slower"),), "signoff"),
    Row("weights-ignored", "cutover", ((_STEPS, "did not follow the weight"),), "signoff"),
    # operator faults (tests/operator_faults.py): made with kubectl/boto3 after the twin started
    Row(
        "nodelocal-forward-wrong-upstream",
        "dns",
        (
            (_NAMES, "forwarded the queries to 10.100.99.99:53"),
            (_LATENCY, "no query was answered"),
        ),
    ),
    Row("nodelocal-bind-missing-link-local", "dns", ((_MODE, "not 169.254.20.10: see `bind`"),)),
    Row(
        "nodelocal-corefile-typo",
        "dns",
        (
            (_CACHE_READY, "Unknown directive 'forwrd'"),
            (_THROUGH_CACHE, "unreadable through the API server's pod proxy"),
        ),
    ),
)

GROUPS: tuple[Group, ...] = (
    Group(
        "a",
        (
            "irsa-wildcard-trust",
            "nodelocal-missing-on-node",
            "autoscaler-stuck",
            "upgrade-stuck",
            "cutover-skewed-split",
        ),
    ),
    Group(
        "b", ("irsa-no-audience", "dns-bypass-cache", "upgrade-skips-drain", "new-backend-errors")
    ),
    Group("c", ("imds-hop-limit-2", "dns-slow-cache", "scale-down-never", "new-backend-slow")),
    Group(
        "d",
        (
            "webhook-off",
            "eviction-ignores-pdb",
            "autoscaler-slow",
            "weights-ignored",
            "nodelocal-forward-wrong-upstream",
        ),
    ),
    Group("e", ("kubelet-slow-ready",)),
    Group("f", ("irsa-role-admin", "nodelocal-corefile-typo")),
    Group("g", ("nodelocal-bind-missing-link-local",), slow=True),
)

ROW_OF = {row.fault: row for row in ROWS}


def grouping_problems() -> list[str]:
    """Why the table is incomplete or a group unsound; empty when the matrix is whole."""
    known = [*FAULTS, *OPERATOR_FAULTS]
    problems = [
        f"{name} is both a twin fault and an operator fault"
        for name in sorted(FAULTS.keys() & OPERATOR_FAULTS.keys())
    ]
    problems += [f"fault {name} has no row in ROWS" for name in known if name not in ROW_OF]
    problems += [f"row {name} names no known fault" for name in ROW_OF if name not in known]
    grouped = [fault for group in GROUPS for fault in group.faults]
    problems += [f"fault {name} is in no group" for name in known if name not in grouped]
    problems += [
        f"fault {name} is in several groups" for name in set(grouped) if grouped.count(name) > 1
    ]
    for group in GROUPS:
        suites = [ROW_OF[fault].suite for fault in group.faults if fault in ROW_OF]
        doubled = sorted({suite for suite in suites if suites.count(suite) > 1})
        problems += [f"group {group.name} has two faults for suite {suite}" for suite in doubled]
    for row in ROWS:
        if row.profile not in PROFILES:
            problems.append(f"row {row.fault}: unknown profile {row.profile}")
        if not row.must_fail or not all(cause for _, cause in row.must_fail):
            problems.append(f"row {row.fault}: names no check to fail or no cause")
    return problems


@dataclass
class CheckOutcome:
    fault: str
    check: str
    expected: str  # "failed" or "passed"
    outcome: str
    verdict: str  # "ok" or what is wrong
    message: str = ""


@dataclass
class GroupResult:
    group: str
    faults: list[str]
    seconds: float
    exit_code: int | None
    problem: str = ""
    checks: list[CheckOutcome] = field(default_factory=list)


def expression(rows: Iterable[Row]) -> str:
    """The ``-m`` expression: each suite at its row's profile."""
    return " or ".join(f"({row.suite} and {row.profile})" for row in rows)


def suite_paths(rows: Iterable[Row]) -> list[str]:
    return [f"suites/{row.suite}" for row in rows]


def judge(row: Row, checks: list[dict[str, Any]]) -> list[CheckOutcome]:
    """The row's verdicts from summary.json's checks of its suite."""
    prefix = f"suites/{row.suite}/"
    mine = [check for check in checks if check["nodeid"].startswith(prefix)]
    if not mine:
        return [CheckOutcome(row.fault, prefix, "failed", "absent", "no check of the suite ran")]
    results = [
        CheckOutcome(row.fault, fragment, "failed", "absent", "no such check ran")
        for fragment, _ in row.must_fail
        if not any(fragment in check["nodeid"] for check in mine)
    ]
    for check in mine:
        causes = [cause for fragment, cause in row.must_fail if fragment in check["nodeid"]]
        outcome, message = check["outcome"], check.get("message", "")
        if causes:
            if outcome != "failed":
                verdict = f"expected to fail, {outcome}"
            elif causes[0].lower() not in message.lower():
                verdict = f"failed without naming the cause {causes[0]!r}"
            else:
                verdict = "ok"
        else:
            verdict = "ok" if outcome in ("passed", "skipped") else f"unrelated check {outcome}"
        expected = "failed" if causes else "passed"
        results.append(
            CheckOutcome(row.fault, check["nodeid"], expected, outcome, verdict, message)
        )
    return results


@dataclass
class SuiteRun:
    """One pytest run of the suites against a fresh twin."""

    exit_code: int | None
    checks: list[dict[str, Any]]
    problem: str
    seconds: float


def apply_operator_faults(names: list[str], twin: RunningTwin) -> str:
    """Run each operator fault's ``apply`` against the twin; what failed, or empty."""
    operator = Operator(twin)
    for name in names:
        try:
            OPERATOR_FAULTS[name].apply(operator)
        except (StepError, subprocess.TimeoutExpired) as error:
            return f"operator fault {name} was not applied: {error}"
    return ""


def run_on_fresh_twin(
    state: Path,
    twin_args: list[str],
    pytest_args: list[str],
    timeout_s: float,
    prepare: Callable[[RunningTwin], str] | None = None,
) -> SuiteRun:
    """Start a twin in ``state``, ``prepare`` it (what failed, or empty), run the suites'
    pytest against it, always stop it."""
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    started = time.monotonic()
    twin = start_twin(state, *twin_args)
    try:
        unprepared = prepare(twin) if prepare is not None else ""
        if unprepared:
            return SuiteRun(None, [], unprepared, round(time.monotonic() - started, 1))
        completed = twin.pytest(*pytest_args, "-q", "-o", "log_cli=false", timeout=timeout_s)
    except subprocess.TimeoutExpired:
        completed = None
    finally:
        stop_twin(state)
    summary_path = state / "reports" / "summary.json"
    checks = json.loads(summary_path.read_text())["checks"] if summary_path.exists() else []
    seconds = round(time.monotonic() - started, 1)
    if completed is None:
        return SuiteRun(None, checks, f"the suites did not finish in {timeout_s:.0f}s", seconds)
    output = completed.stdout + completed.stderr
    (state / "pytest-output.txt").write_text(output)
    problem = ""
    if completed.returncode not in (0, 1):
        tail = " | ".join(output.strip().splitlines()[-15:])
        problem = f"pytest exited {completed.returncode}: {tail}"
    return SuiteRun(completed.returncode, checks, problem, seconds)


def run_group(group: Group, work: Path) -> GroupResult:
    """Start one twin with the group's faults, run their suites once, judge every row."""
    rows = [ROW_OF[fault] for fault in group.faults]
    result = GroupResult(group.name, list(group.faults), 0.0, None)
    missing = sorted({row.suite for row in rows if not (ROOT / "suites" / row.suite).is_dir()})
    problems = [f"suite(s) {', '.join(missing)} do not exist"] if missing else []
    present = [row for row in rows if row.suite not in missing]
    if present:
        switches = [row.fault for row in present if row.fault in FAULTS]
        run = run_on_fresh_twin(
            work / f"twin-{group.name}",
            ["--nodes", str(group.nodes), *(a for name in switches for a in ("--fault", name))],
            [*suite_paths(present), "-m", expression(present)],
            GROUP_TIMEOUT_S,
            prepare=lambda twin: apply_operator_faults(
                [row.fault for row in present if row.fault in OPERATOR_FAULTS], twin
            ),
        )
        result.exit_code, result.seconds = run.exit_code, run.seconds
        problems += [run.problem] if run.problem else []
        for row in present:
            result.checks += judge(row, run.checks)
    result.checks += [
        CheckOutcome(row.fault, f"suites/{row.suite}", "failed", "absent", "no suite")
        for row in rows
        if row.suite in missing
    ]
    result.problem = "; ".join(problems)
    return result


def table(results: list[GroupResult]) -> str:
    lines = [
        "# Fault matrix",
        "",
        "| group | fault | check | expected | outcome | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        for check in result.checks:
            name = check.check.removeprefix("suites/")
            lines.append(
                f"| {result.group} | {check.fault} | {name} | {check.expected} | "
                f"{check.outcome} | {check.verdict} |"
            )
    lines += ["", "| group | faults | seconds | pytest exit | problem |", "|---|---|---|---|---|"]
    for result in results:
        lines.append(
            f"| {result.group} | {', '.join(result.faults)} | {result.seconds} | "
            f"{result.exit_code} | {result.problem or '-'} |"
        )
    return "\n".join(lines) + "\n"


def failures(results: list[GroupResult]) -> list[str]:
    found = [f"group {r.group}: {r.problem}" for r in results if r.problem]
    found += [
        f"{check.fault}: {check.check}: {check.verdict}"
        + (f" (message: {check.message[:300]})" if check.message else "")
        for result in results
        for check in result.checks
        if check.verdict != "ok"
    ]
    return found


def write_reports(results: list[GroupResult], reports: Path) -> tuple[Path, Path]:
    reports.mkdir(parents=True, exist_ok=True)
    markdown, data = reports / "fault-matrix.md", reports / "fault-matrix.json"
    _replace(markdown, table(results))
    _replace(data, json.dumps([asdict(result) for result in results], indent=2))
    return markdown, data


def record(result: GroupResult, reports: Path) -> tuple[Path, Path]:
    """Keep one group's result and rewrite the table from every group recorded so far, so that
    groups run by different xdist workers end up in one table."""
    groups = reports / "fault-matrix-groups"
    groups.mkdir(parents=True, exist_ok=True)
    _replace(groups / f"{result.group}.json", json.dumps(asdict(result)))
    order = [group.name for group in GROUPS]
    results = []
    for path in sorted(groups.glob("*.json")):
        found = json.loads(path.read_text())
        found["checks"] = [CheckOutcome(**check) for check in found["checks"]]
        results.append(GroupResult(**found))
    results.sort(key=lambda r: order.index(r.group) if r.group in order else len(order))
    return write_reports(results, reports)


def _replace(path: Path, text: str) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.fault_matrix [--group NAME ...]``: run, print and write the table."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m tests.fault_matrix", description=__doc__)
    parser.add_argument("--group", action="append", choices=[g.name for g in GROUPS])
    parser.add_argument("--reports-dir", default=str(ROOT / "reports"))
    args = parser.parse_args(argv)
    problems = grouping_problems()
    if problems:
        print("\n".join(problems))
        return 2
    chosen = [g for g in GROUPS if not args.group or g.name in args.group]
    work = Path(tempfile.mkdtemp(prefix="fault-matrix-"))
    results = []
    for group in chosen:
        results.append(run_group(group, work))
        markdown, _ = record(results[-1], Path(args.reports_dir))
        print(f"group {group.name} done in {results[-1].seconds}s", flush=True)
    print(table(results))
    found = failures(results)
    print("\n".join(found) or "every row holds", f"\n(table in {markdown}; twins in {work})")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
