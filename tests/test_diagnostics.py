"""Diagnostics on failure, without a cluster: what a pod's state says, AWS errors found in an
exception chain, the size bound, what a check names, --keep-on-failure's undo rule, and the
collapsed section of report.html. The end-to-end proof against a twin is
tests/test_failure_evidence.py."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from clustergate.diagnostics import (
    RESULT_KEY,
    Limits,
    aws_errors,
    collect,
    fit,
    pod_state,
    probe_aws_errors,
)
from clustergate.kube import connect
from clustergate.redact import Redactor
from clustergate.report.render import write_report
from clustergate.results import SummaryWriter
from clustergate.runctx import RunContext
from tests.test_report import parse_html

POD = {
    "metadata": {"name": "probe-dns-1a2b3c", "namespace": "clustergate-run-gw0"},
    "spec": {"nodeName": "ip-10-0-0-10"},
    "status": {
        "phase": "Running",
        "podIP": "10.0.0.7",
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
            {"type": "PodScheduled", "status": "True"},
        ],
        "containerStatuses": [
            {
                "name": "probe",
                "image": "clustergate/probe:1",
                "ready": False,
                "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                "lastState": {
                    "terminated": {"exitCode": 2, "reason": "Error", "finishedAt": "2026-12-04"}
                },
            }
        ],
    },
}


def test_pod_state_says_phase_conditions_restarts_last_termination_and_node() -> None:
    state = pod_state(POD)
    assert (state["phase"], state["node"]) == ("Running", "ip-10-0-0-10")
    assert {
        "type": "Ready",
        "status": "False",
        "reason": "ContainersNotReady",
        "message": None,
    } in (state["conditions"])
    (container,) = state["containers"]
    assert container["restart_count"] == 3
    assert container["state"] == {
        "state": "waiting",
        "reason": "CrashLoopBackOff",
        "message": "back-off 40s",
    }
    assert container["last_termination"]["exitCode"] == 2


def test_aws_errors_are_found_anywhere_in_the_exception_chain() -> None:
    # A ClientError as botocore raises it from a parsed error response.
    response: Any = {
        "Error": {"Code": "AccessDenied", "Message": "Not authorized to perform sts:AssumeRole"},
        "ResponseMetadata": {"RequestId": "4f1c-req", "HTTPStatusCode": 403},
    }
    try:
        try:
            raise ClientError(response, "AssumeRoleWithWebIdentity")
        except ClientError as error:
            raise AssertionError("the pod got no credentials") from error
    except AssertionError as outer:
        found = aws_errors(outer)
    assert found == [
        {
            "operation": "AssumeRoleWithWebIdentity",
            "code": "AccessDenied",
            "message": "Not authorized to perform sts:AssumeRole",
            "http_status": 403,
            "request_id": "4f1c-req",
        }
    ]
    assert aws_errors(ValueError("no AWS here")) == []


def test_aws_errors_a_probe_pod_reported_are_read_from_its_result_line() -> None:
    result = {
        RESULT_KEY: "web-identity",
        "assume": {
            "ok": False,
            "operation": "sts:AssumeRoleWithWebIdentity",
            "error_code": "AccessDenied",
            "error_message": "Not authorized",
            "http_status": 403,
            "request_id": "req-1",
        },
        "calls": [
            {"call": "iam:ListRoles", "allowed": False, "code": "AccessDenied", "request_id": "r2"},
            {"call": "elbv2:DescribeLoadBalancers", "allowed": True, "code": None},
        ],
    }
    log = f"starting\n{json.dumps(result)}\n"
    found = probe_aws_errors(log, "payments/probe-1")
    assert [(e["operation"], e["code"], e["request_id"]) for e in found] == [
        ("sts:AssumeRoleWithWebIdentity", "AccessDenied", "req-1"),
        ("iam:ListRoles", "AccessDenied", "r2"),
    ]
    assert {e["pod"] for e in found} == {"payments/probe-1"}
    assert probe_aws_errors("no result line\n{broken", "p") == []


def test_diagnostics_are_cut_to_their_size_bound() -> None:
    big = {
        "events": [{"message": "x" * 500, "last": str(i)} for i in range(400)],
        "pods": [{"name": f"p{i}", "log_tail": "line\n" * 2000} for i in range(30)],
        "nodes": [],
        "problems": [],
    }
    cut = fit(big, 50_000)
    assert len(json.dumps(cut)) <= 50_000
    assert cut["events"][-1]["last"] == "399", "the newest events are kept"
    assert any("cut to fit" in problem for problem in cut["problems"])


def test_collection_against_an_unreachable_cluster_is_bounded_and_never_raises(
    tmp_path: Path,
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "kube-token-that-must-not-leak"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    cluster = connect(str(kubeconfig), None)
    started = time.monotonic()
    found = collect(cluster, "clustergate-run-main", limits=Limits(total_s=3, request_s=1))
    assert time.monotonic() - started < 10
    assert found["problems"], "what could not be collected is said"
    assert any("pods of clustergate-run-main" in problem for problem in found["problems"])
    assert "kube-token-that-must-not-leak" not in json.dumps(found)


def _context() -> RunContext:
    return RunContext(None, "cg-x", "ns", {}, keep_on_failure=True)  # type: ignore[arg-type]


def test_objects_named_by_a_module_fixture_belong_to_the_checks_that_follow() -> None:
    run = _context()
    run.name("Pod", "probe-a", "team-a", snapshot={"phase": "Succeeded"})
    with run.check_scope():
        run.name("Node", "node-1")
        assert [n.name for n in run.named()] == ["node-1", "probe-a"]
    with run.check_scope():
        assert [n.name for n in run.named()] == ["probe-a"]
        assert run.named()[0].snapshot == {"phase": "Succeeded"}
    run.forget_shared()  # the next module starts
    run.name("Pod", "probe-b", "team-b")
    with run.check_scope():
        assert [n.name for n in run.named()] == ["probe-b"]
    assert run.named(include_check=False) == run.named()


def test_keep_on_failure_skips_a_failed_checks_deletions_but_puts_changes_back() -> None:
    run = _context()
    done: list[str] = []
    with run.check_scope():
        run.on_teardown("delete deployment", lambda: done.append("deleted"), deletes=True)
        run.on_teardown("uncordon node", lambda: done.append("uncordoned"))
        run.check_failed("suites/drain/test_drain.py::test_x")
    assert done == ["uncordoned"]
    assert run.kept_for == ["suites/drain/test_drain.py::test_x"]
    with run.check_scope():
        run.on_teardown("delete budget", lambda: done.append("budget deleted"), deletes=True)
    assert done == ["uncordoned", "budget deleted"], "a passing check deletes what it made"


def test_report_shows_each_failed_checks_diagnostics_collapsed(tmp_path: Path) -> None:
    diagnostics = {
        "namespace": "clustergate-run-gw0",
        "named": ["pod/clustergate-run-gw0/probe-dns-1a2b3c", "node/ip-10-0-0-10"],
        "events": [
            {
                "last": "2026-12-04T13:00:00+00:00",
                "type": "Warning",
                "reason": "BackOff",
                "object": "pod/clustergate-run-gw0/probe-dns-1a2b3c",
                "count": 4,
                "message": "Back-off restarting failed container",
            }
        ],
        "pods": [{**pod_state(POD), "log_tail": "resolving kubernetes.default\ntimeout"}],
        "nodes": [
            {
                "name": "ip-10-0-0-10",
                "unschedulable": True,
                "cordoned_by": "cg-x",
                "taints": ["node.kubernetes.io/unschedulable=:NoSchedule"],
                "conditions": [{"type": "Ready", "status": "True"}],
            }
        ],
        "aws_errors": [],
        "problems": [],
    }
    summary = {
        "started": "2026-12-04T13:00:00+00:00",
        "finished": "2026-12-04T13:01:00+00:00",
        "exit_status": 1,
        "verdict": "not fit",
        "facts": {"cluster": "c", "run_id": "cg-x", "suites": ["dns"]},
        "checks": [
            {
                "nodeid": "suites/dns/test_dns_nodelocal.py::test_names_resolve",
                "outcome": "failed",
                "message": "names did not resolve",
                "diagnostics": diagnostics,
            },
            {"nodeid": "suites/dns/test_dns_nodelocal.py::test_other", "outcome": "passed"},
        ],
    }
    write_report(summary, tmp_path / "report.html")
    page = parse_html((tmp_path / "report.html").read_text())
    (details,) = page.iter("details")
    assert "open" not in details.attrs, "collapsed until a person opens it"
    assert "1 event(s), 1 pod(s), 1 node(s)" in details.iter("summary")[0].text
    (events,) = details.iter("table", **{"class": "events"})
    assert "BackOff" in events.text
    assert "Back-off restarting" in events.text
    (pods,) = details.iter("table", **{"class": "pods"})
    assert "restarts=3" in pods.text
    assert "CrashLoopBackOff" in pods.text
    assert "ip-10-0-0-10" in pods.text
    assert "timeout" in details.iter("pre")[0].text
    (nodes,) = details.iter("table", **{"class": "nodes"})
    assert "cordoned by cg-x" in nodes.text


def test_summary_keeps_diagnostics_and_redacts_failure_messages(tmp_path: Path) -> None:
    writer = SummaryWriter(tmp_path / "summary.json", {}, redactor=Redactor(["kube-token-123456"]))
    failed = pytest.TestReport(
        "suites/dns/test_dns_nodelocal.py::test_x",
        ("suites/dns/test_dns_nodelocal.py", 1, "test_x"),
        {},
        "failed",
        "the probe printed Authorization: Bearer kube-token-123456",
        "call",
        clustergate_diagnostics={"namespace": "ns", "events": []},
    )
    writer.pytest_runtest_logreport(failed)
    (check,) = writer.checks.values()
    assert "kube-token-123456" not in check.message
    assert check.diagnostics == {"namespace": "ns", "events": []}
