"""PodDisruptionBudget analysis: which budgets can never allow a disruption, and why.

A budget that can never allow a disruption blocks every drain, and with it every managed
node-group upgrade (EKS gives up with ``PodEvictionFailure``) and every autoscaler scale-down of
the nodes its pods run on. The kinds found here:

- ``maxUnavailable: 0`` or ``0%``;
- ``minAvailable`` of 100%, or at least the number of pods the budget expects (the replicas of
  its workloads: the PDB status's ``expectedPods`` once the disruption controller has seen the
  budget, else the pods it selects);
- a selector that matches no pod (the budget protects nothing; usually a label typo, and the
  workload it was meant for is unprotected);
- pods selected by more than one budget: the eviction API refuses them with 500 ("more than one
  PodDisruptionBudget"), so they can never be evicted.

The rules follow the disruption controller (pkg/controller/disruption): percentages are
scaled against the expected pods and rounded up; a null selector selects nothing in policy/v1,
an empty one every pod of the namespace.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from clustergate.kube import Cluster, list_all

NEVER_ZERO_MAX_UNAVAILABLE = "maxUnavailable is {value}: no pod may ever be disrupted"
NEVER_FULL_MIN_AVAILABLE = "minAvailable is {value}: every pod must stay available"
NEVER_MIN_AT_REPLICAS = "minAvailable {value} >= the {expected} pod(s) it expects"
SELECTS_NOTHING = "its selector matches no pod in {namespace}"
_FINISHED = ("Succeeded", "Failed")
SEVERAL_BUDGETS = "pod(s) also covered by {others}: the eviction API refuses them (500)"


def selector_matches(selector: Any, labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector (client model or None) against a pod's labels.

    None selects nothing (policy/v1 semantics for PDBs); an empty selector selects everything.
    """
    if selector is None:
        return False
    for key, value in (selector.match_labels or {}).items():
        if labels.get(key) != value:
            return False
    for requirement in selector.match_expressions or []:
        present = requirement.key in labels
        values = set(requirement.values or [])
        operator = requirement.operator
        if operator == "In" and not (present and labels[requirement.key] in values):
            return False
        if operator == "NotIn" and present and labels[requirement.key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def scaled_value(value: int | str, total: int) -> int:
    """An IntOrString against ``total``, percentages rounded up as the disruption controller
    does (GetScaledValueFromIntOrPercent with roundUp)."""
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.endswith("%"):
        return math.ceil(int(text[:-1]) * total / 100)
    return int(text)


def is_percent(value: int | str) -> bool:
    return isinstance(value, str) and value.strip().endswith("%")


def workload_of(pod: Any) -> str:
    """``Kind/name`` of the workload that owns ``pod``: a ReplicaSet that a Deployment made is
    named after the Deployment (its name is ``<deployment>-<pod-template-hash>``)."""
    for ref in pod.metadata.owner_references or []:
        if not ref.controller:
            continue
        template_hash = (pod.metadata.labels or {}).get("pod-template-hash")
        if ref.kind == "ReplicaSet" and template_hash and ref.name.endswith(f"-{template_hash}"):
            return f"Deployment/{ref.name[: -len(template_hash) - 1]}"
        return f"{ref.kind}/{ref.name}"
    return f"Pod/{pod.metadata.name}"


@dataclass(frozen=True)
class BudgetFinding:
    """One budget that blocks disruptions (or protects nothing), with what it covers."""

    namespace: str
    name: str
    reason: str
    workloads: tuple[str, ...]
    pods: tuple[str, ...]

    def describe(self) -> str:
        covers = ", ".join(self.workloads) or "no workload"
        return f"PDB {self.namespace}/{self.name}: {self.reason} (covers {covers})"


def expected_pods(pdb: Any, selected: int) -> int:
    """What the budget is scaled against: the controller's ``expectedPods`` once it has
    observed this generation of the budget, else the number of pods the selector matches."""
    status = pdb.status
    generation = pdb.metadata.generation or 0
    if status is not None and (status.observed_generation or 0) >= generation > 0:
        return int(status.expected_pods or 0)
    return selected


def never_disrupts(pdb: Any, expected: int) -> str | None:
    """Why ``pdb`` can never allow a disruption, or None when it can."""
    spec = pdb.spec
    if spec.max_unavailable is not None:
        if scaled_value(spec.max_unavailable, expected) <= 0:
            return NEVER_ZERO_MAX_UNAVAILABLE.format(value=spec.max_unavailable)
        return None
    if spec.min_available is None:
        return None
    if is_percent(spec.min_available) and int(str(spec.min_available).strip()[:-1]) >= 100:
        return NEVER_FULL_MIN_AVAILABLE.format(value=spec.min_available)
    if expected > 0 and scaled_value(spec.min_available, expected) >= expected:
        return NEVER_MIN_AT_REPLICAS.format(value=spec.min_available, expected=expected)
    return None


def analyse(pdbs: Iterable[Any], pods: Iterable[Any]) -> list[BudgetFinding]:
    """Every budget among ``pdbs`` that can never allow a disruption or selects nothing, and
    every budget whose pods another budget also covers. Finished pods are not counted."""
    live_pods = [pod for pod in pods if (pod.status.phase if pod.status else None) not in _FINISHED]
    by_namespace: dict[str, list[Any]] = defaultdict(list)
    for pod in live_pods:
        by_namespace[pod.metadata.namespace].append(pod)
    selected: dict[tuple[str, str], list[Any]] = {}
    budgets_of_pod: dict[tuple[str, str], list[str]] = defaultdict(list)
    budget_list = list(pdbs)
    for pdb in budget_list:
        namespace, name = pdb.metadata.namespace, pdb.metadata.name
        chosen = [
            pod
            for pod in by_namespace.get(namespace, [])
            if selector_matches(pdb.spec.selector, pod.metadata.labels or {})
        ]
        selected[(namespace, name)] = chosen
        for pod in chosen:
            budgets_of_pod[(namespace, pod.metadata.name)].append(name)
    findings = []
    for pdb in budget_list:
        namespace, name = pdb.metadata.namespace, pdb.metadata.name
        chosen = selected[(namespace, name)]
        workloads = tuple(sorted({workload_of(pod) for pod in chosen}))
        pod_names = tuple(sorted(pod.metadata.name for pod in chosen))
        reasons = []
        if not chosen:
            reasons.append(SELECTS_NOTHING.format(namespace=namespace))
        elif reason := never_disrupts(pdb, expected_pods(pdb, len(chosen))):
            reasons.append(reason)
        others = sorted(
            {
                other
                for pod in chosen
                for other in budgets_of_pod[(namespace, pod.metadata.name)]
                if other != name
            }
        )
        if others:
            reasons.append(SEVERAL_BUDGETS.format(others=", ".join(others)))
        findings.extend(
            BudgetFinding(namespace, name, reason, workloads, pod_names) for reason in reasons
        )
    return findings


def find_blocking_budgets(cluster: Cluster) -> list[BudgetFinding]:
    """:func:`analyse` over every PDB and pod of the cluster (read-only)."""
    pdbs = list_all(cluster.policy().list_pod_disruption_budget_for_all_namespaces)
    pods = list_all(cluster.core().list_pod_for_all_namespaces)
    return analyse(pdbs, pods)
