"""Faults made through the API, as an operator makes them: kubectl and boto3 against a twin.

A twin ``--fault`` switch changes the twin's code; a fault here changes the cluster's state
(an edited ConfigMap, a patched DaemonSet, a taint, an IAM policy) and the twin behaves as a
real cluster does with that state. The fault matrix runs these rows like the switch rows: in a
group, against the group's twin, after ``apply`` and before the suites.

To add one: write a :class:`OperatorFault` with an ``apply`` step, add it to
:data:`OPERATOR_FAULTS`, then give it a row and a group in ``tests/fault_matrix.py`` (the
group's twin is thrown away after its run, so nothing is put back). A step is either
:func:`kubectl` (a list of kubectl command lines, run in order) or any function of an
:class:`Operator`. A step waits for
its change to take effect (``kubectl rollout status``, ``kubectl wait``, :meth:`Operator.wait`)
so that the suites see the cluster in its faulty state.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.conftest import RunningTwin

#: One kubectl command may take this long.
KUBECTL_TIMEOUT_S = 120.0


class StepError(RuntimeError):
    """A fault's step did not do what it says (the command failed, or the wait timed out)."""


@dataclass(frozen=True)
class Operator:
    """What an operator has in hand against one twin: its kubeconfig and AWS settings."""

    twin: RunningTwin

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        """``kubectl ARGS`` against the twin; its stdout, or :class:`StepError` with stderr."""
        command = ["kubectl", "--kubeconfig", str(self.twin.kubeconfig), *args]
        done = subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=KUBECTL_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise StepError(f"`{shlex.join(command[3:])}` exited {done.returncode}: {done.stderr}")
        return done.stdout

    def get(self, *args: str) -> Any:
        """``kubectl get ARGS -o json``, parsed."""
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def wait(
        self, what: str, done: Callable[[], bool], timeout_s: float = 60.0, every_s: float = 0.5
    ) -> None:
        """Poll ``done`` until it holds; :class:`StepError` naming ``what`` after the deadline."""
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                raise StepError(f"{what}: not so after {timeout_s:.0f}s")
            time.sleep(every_s)


Step = Callable[[Operator], None]


def kubectl(*commands: str) -> Step:
    """A step that runs each kubectl command line (without ``kubectl``) in order."""

    def run(operator: Operator) -> None:
        for command in commands:
            operator.kubectl(*shlex.split(command))

    run.__doc__ = "; ".join(f"kubectl {command}" for command in commands)
    return run


def steps(*parts: Step) -> Step:
    """Several steps as one, run in order."""

    def run(operator: Operator) -> None:
        for part in parts:
            part(operator)

    return run


@dataclass(frozen=True)
class OperatorFault:
    name: str
    summary: str
    apply: Step


# --- node-local-dns ---------------------------------------------------------------------------

_NODELOCAL = "-n kube-system {verb} ds/node-local-dns"
_ROLLOUT = _NODELOCAL.format(verb="rollout status") + " --timeout=90s"
_RESTART = _NODELOCAL.format(verb="rollout restart")
_CACHE_PODS = ("-n", "kube-system", "pods", "-l", "k8s-app=node-local-dns")


def _edit_corefile(old: str, new: str, count: int = -1) -> Step:
    """Replace ``old`` by ``new`` in the node-local-dns ConfigMap's Corefile (``count``
    times; all by default), as ``kubectl edit`` would; :class:`StepError` when ``old`` is
    not there."""

    def run(operator: Operator) -> None:
        corefile = operator.get("-n", "kube-system", "configmap", "node-local-dns")["data"][
            "Corefile"
        ]
        if old not in corefile:
            raise StepError(f"the node-local-dns Corefile has no {old!r} to edit")
        patch = {"data": {"Corefile": corefile.replace(old, new, count)}}
        operator.kubectl(
            "-n", "kube-system", "patch", "configmap", "node-local-dns", "--type=merge",
            "-p", json.dumps(patch),
        )  # fmt: skip

    run.__doc__ = f"edit the node-local-dns Corefile: {old!r} -> {new!r}"
    return run


def _a_cache_pod_restarted(operator: Operator) -> None:
    def restarted() -> bool:
        pods = operator.get(*_CACHE_PODS)["items"]
        return any(
            status.get("restartCount", 0) > 0
            for pod in pods
            for status in (pod.get("status") or {}).get("containerStatuses") or []
        )

    operator.wait("a node-local-dns pod restarted (crash loop)", restarted)


OPERATOR_FAULTS: dict[str, OperatorFault] = {
    fault.name: fault
    for fault in (
        OperatorFault(
            "nodelocal-forward-wrong-upstream",
            "The node-local-dns Corefile forwards cluster.local to 10.100.99.99, where nothing "
            "answers, instead of kube-dns-upstream; the pods restarted (kubectl patch cm, "
            "kubectl rollout restart).",
            steps(
                _edit_corefile(
                    "forward . __PILLAR__CLUSTER__DNS__", "forward . 10.100.99.99", count=1
                ),
                kubectl(_RESTART, _ROLLOUT),
            ),
        ),
        OperatorFault(
            "nodelocal-bind-missing-link-local",
            "The node-local-dns Corefile binds only the kube-dns IP, not the link-local "
            "169.254.20.10 (kubectl patch cm, kubectl rollout restart).",
            steps(_edit_corefile("bind 169.254.20.10 ", "bind "), kubectl(_RESTART, _ROLLOUT)),
        ),
        OperatorFault(
            "nodelocal-corefile-typo",
            "A typo in the node-local-dns Corefile (forwrd), then the pods restarted: the first "
            "new pod crash-loops and the rollout stalls (kubectl patch cm, kubectl rollout "
            "restart).",
            steps(
                _edit_corefile("forward .", "forwrd .", count=1),
                kubectl(_RESTART),
                _a_cache_pod_restarted,
            ),
        ),
    )
}
