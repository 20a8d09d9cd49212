"""Every twin fault makes the right check fail, naming the cause, and only that (issue 12).

The table and the grouping are in tests/fault_matrix.py. One test per group starts one twin
with the group's faults and runs their suites once; groups run side by side under xdist.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from clustergate.twin.faults import FAULTS
from tests import fault_matrix, operator_faults
from tests.conftest import ROOT, RunningTwin
from tests.operator_faults import OPERATOR_FAULTS, Operator, OperatorFault, StepError


def test_every_fault_has_a_row_and_one_group() -> None:
    assert not fault_matrix.grouping_problems(), "\n".join(fault_matrix.grouping_problems())
    assert set(fault_matrix.ROW_OF) == set(FAULTS) | set(OPERATOR_FAULTS)


def test_an_operator_fault_without_a_row_fails_the_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = OperatorFault("new-edit", "not in the matrix yet", operator_faults.kubectl("version"))
    monkeypatch.setitem(OPERATOR_FAULTS, "new-edit", extra)
    problems = fault_matrix.grouping_problems()
    assert "fault new-edit has no row in ROWS" in problems
    assert "fault new-edit is in no group" in problems


def test_a_failed_kubectl_step_names_the_command(tmp_path: Path) -> None:
    twin = RunningTwin(tmp_path, tmp_path / "missing-kubeconfig", tmp_path / "cluster.yaml", {})
    step = operator_faults.kubectl("get nodes", "-n kube-system get cm node-local-dns")
    with pytest.raises(StepError, match=r"`get nodes` exited 1"):
        step(Operator(twin))
    problem = fault_matrix.apply_operator_faults(["nodelocal-corefile-typo"], twin)
    assert problem.startswith("operator fault nodelocal-corefile-typo was not applied: `get")


def test_a_fault_without_a_row_fails_the_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = FAULTS["webhook-off"].__class__("new-fault", "apiserver", "not in the matrix yet")
    monkeypatch.setitem(FAULTS, "new-fault", extra)
    assert "fault new-fault has no row in ROWS" in fault_matrix.grouping_problems()


def test_judging_tells_a_fault_that_went_unnoticed() -> None:
    row = fault_matrix.ROW_OF["dns-bypass-cache"]
    (caught, cause), other = row.must_fail[0], "suites/dns/test_dns_nodelocal.py::test_other"
    checks = [
        {"nodeid": caught, "outcome": "passed", "message": ""},
        {"nodeid": other, "outcome": "failed", "message": "boom"},
    ]
    verdicts = {c.check: c.verdict for c in fault_matrix.judge(row, checks)}
    assert verdicts == {caught: "expected to fail, passed", other: "unrelated check failed"}
    checks = [
        {"nodeid": caught, "outcome": "failed", "message": "x " + cause.upper()},
        {"nodeid": other, "outcome": "skipped", "message": ""},
    ]
    assert {c.verdict for c in fault_matrix.judge(row, checks)} == {"ok"}


@pytest.mark.timeout(fault_matrix.GROUP_TIMEOUT_S + 120)
@pytest.mark.parametrize(
    "group",
    [
        pytest.param(group, id=group.name, marks=[pytest.mark.slow] if group.slow else [])
        for group in fault_matrix.GROUPS
    ],
)
def test_each_fault_of_the_group_fails_its_check_naming_the_cause(
    group: fault_matrix.Group, tmp_path: Path
) -> None:
    result = fault_matrix.run_group(group, tmp_path)
    markdown, _ = fault_matrix.record(result, ROOT / "reports")
    print(fault_matrix.table([result]))
    found = fault_matrix.failures([result])
    assert not found, f"(table in {markdown})\n" + "\n".join(found)
