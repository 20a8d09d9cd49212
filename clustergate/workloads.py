"""The disruption checks' own test workload: a Deployment spread over nodes, with a budget.

The pods run a pause image (nothing to pull but a few hundred kB, exits on SIGTERM at once) with
small requests. They are spread over ``kubernetes.io/hostname`` by a topology spread constraint
and kept to the nodes the check chose by node affinity. The spread is ``ScheduleAnyway``: with
``DoNotSchedule`` the cordoned, emptied node still counts as a domain with no pods (its
unschedulable taint is ignored under the default nodeTaintsPolicy), so the evicted pods'
replacements could not be placed anywhere else, and a tight budget would deadlock the drain.

Everything is labelled with the run's labels and lives in the run's namespace, which is deleted
at the end of the run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from clustergate.admission import refusal_in
from clustergate.availability import pod_healthy
from clustergate.runctx import RunContext
from clustergate.wait import wait_for_objects

PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
WORKLOAD_LABEL = "clustergate.io/workload"
HOSTNAME_LABEL = "kubernetes.io/hostname"


@dataclass(frozen=True)
class Workload:
    name: str
    namespace: str
    replicas: int
    pdb: str
    #: The healthy pods the budget requires at every moment.
    min_available: int

    @property
    def selector(self) -> str:
        return f"{WORKLOAD_LABEL}={self.name}"


def _pod_template(
    run: RunContext, name: str, affinity: dict[str, list[str]], image: str
) -> client.V1PodTemplateSpec:
    labels = {**run.labels, WORKLOAD_LABEL: name}
    terms = [
        client.V1NodeSelectorRequirement(key=key, operator="In", values=sorted(values))
        for key, values in affinity.items()
    ]
    return client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels=labels),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name="pause",
                    image=image,
                    resources=client.V1ResourceRequirements(
                        requests={"cpu": "10m", "memory": "16Mi"},
                        limits={"memory": "32Mi"},
                    ),
                )
            ],
            termination_grace_period_seconds=5,
            affinity=client.V1Affinity(
                node_affinity=client.V1NodeAffinity(
                    required_during_scheduling_ignored_during_execution=client.V1NodeSelector(
                        node_selector_terms=[client.V1NodeSelectorTerm(match_expressions=terms)]
                    )
                )
            ),
            topology_spread_constraints=[
                client.V1TopologySpreadConstraint(
                    max_skew=1,
                    topology_key=HOSTNAME_LABEL,
                    when_unsatisfiable="ScheduleAnyway",
                    label_selector=client.V1LabelSelector(match_labels={WORKLOAD_LABEL: name}),
                )
            ],
        ),
    )


def deploy(
    run: RunContext,
    name: str,
    *,
    replicas: int,
    affinity: dict[str, list[str]],
    min_available: int | None = None,
    max_unavailable: int | None = None,
    timeout_s: float,
    image: str = PAUSE_IMAGE,
) -> Workload:
    """Create the Deployment and its PDB (exactly one of ``min_available``/``max_unavailable``)
    and wait until every replica is Ready and the budget's status has seen them."""
    if (min_available is None) == (max_unavailable is None):
        raise ValueError("give exactly one of min_available and max_unavailable")
    match = {WORKLOAD_LABEL: name}
    apps, policy = run.cluster.apps(), run.cluster.policy()
    apps.create_namespaced_deployment(
        run.namespace,
        client.V1Deployment(
            metadata=run.metadata(name, **match),
            spec=client.V1DeploymentSpec(
                replicas=replicas,
                selector=client.V1LabelSelector(match_labels=match),
                template=_pod_template(run, name, affinity, image),
            ),
        ),
    )
    run.name("Deployment", name, run.namespace)
    run.on_teardown(
        f"delete deployment {run.namespace}/{name}",
        lambda: _gone(apps.delete_namespaced_deployment, name, run.namespace),
        deletes=True,
    )
    policy.create_namespaced_pod_disruption_budget(
        run.namespace,
        client.V1PodDisruptionBudget(
            metadata=run.metadata(name, **match),
            spec=client.V1PodDisruptionBudgetSpec(
                min_available=min_available,
                max_unavailable=max_unavailable,
                selector=client.V1LabelSelector(match_labels=match),
            ),
        ),
    )
    run.on_teardown(
        f"delete poddisruptionbudget {run.namespace}/{name}",
        lambda: _gone(policy.delete_namespaced_pod_disruption_budget, name, run.namespace),
        deletes=True,
    )
    required = min_available if min_available is not None else replicas - (max_unavailable or 0)
    workload = Workload(name, run.namespace, replicas, name, required)
    wait_ready(run, workload, timeout_s)
    return workload


def _gone(delete: Callable[..., object], name: str, namespace: str) -> None:
    """Delete, with dependents in the background; already gone is fine."""
    try:
        delete(name, namespace, propagation_policy="Background")
    except ApiException as error:
        if error.status != 404:
            raise


def _ready_or_refused(deployments: list[client.V1Deployment], replicas: int, what: str) -> bool:
    """Whether the Deployment has all its replicas Ready; an AssertionError naming the webhook
    or policy when admission refuses its pods (condition ReplicaFailure, which the deployment
    controller copies from its ReplicaSet), which no amount of waiting mends."""
    for deployment in deployments:
        status = deployment.status
        for condition in (status.conditions if status else None) or []:
            refused = refusal_in(condition.message or "")
            if condition.type == "ReplicaFailure" and condition.status == "True" and refused:
                raise AssertionError(refused.sentence(f"the pods of {what}"))
    return any(d.status and (d.status.ready_replicas or 0) >= replicas for d in deployments)


def describe_deployments(deployments: list[client.V1Deployment]) -> str:
    if not deployments:
        return "no Deployment"
    status = deployments[0].status
    ready = (status.ready_replicas or 0) if status else 0
    failing = [
        f"{c.type}: {c.message}"
        for c in (status.conditions if status else None) or []
        if c.type == "ReplicaFailure"
    ]
    return "; ".join([f"{ready} Ready", *failing])


def wait_ready(run: RunContext, workload: Workload, timeout_s: float) -> None:
    """Until all replicas are healthy and the PDB status counts them all. The Deployment is
    watched first: a pod that admission refuses is never created, and only the Deployment's
    ReplicaFailure condition says why."""
    what = f"Deployment {workload.namespace}/{workload.name}"
    wait_for_objects(
        run.cluster.apps().list_namespaced_deployment,
        lambda deployments: _ready_or_refused(deployments, workload.replicas, what),
        what=f"{workload.replicas} Ready replicas of {what}",
        timeout_s=timeout_s,
        describe=describe_deployments,
        namespace=workload.namespace,
        field_selector=f"metadata.name={workload.name}",
    )
    wait_for_objects(
        run.cluster.core().list_namespaced_pod,
        lambda pods: sum(pod_healthy(pod) for pod in pods) >= workload.replicas,
        what=f"{workload.replicas} Ready pods of Deployment {workload.namespace}/{workload.name}",
        timeout_s=timeout_s,
        describe=lambda pods: describe_pods(pods),
        namespace=workload.namespace,
        label_selector=workload.selector,
    )
    wait_for_objects(
        run.cluster.policy().list_namespaced_pod_disruption_budget,
        lambda pdbs: any(
            pdb.status is not None
            and (pdb.status.observed_generation or 0) >= (pdb.metadata.generation or 1)
            and (pdb.status.current_healthy or 0) >= workload.replicas
            for pdb in pdbs
        ),
        what=f"PDB {workload.namespace}/{workload.pdb} to count {workload.replicas} healthy pods",
        timeout_s=timeout_s,
        describe=lambda pdbs: "; ".join(describe_budget(pdb) for pdb in pdbs) or "no PDB",
        namespace=workload.namespace,
        field_selector=f"metadata.name={workload.pdb}",
    )


def describe_budget(pdb: client.V1PodDisruptionBudget) -> str:
    status = pdb.status
    if status is None:
        return f"PDB {pdb.metadata.name} has no status yet"
    return (
        f"PDB {pdb.metadata.name}: currentHealthy={status.current_healthy} "
        f"desiredHealthy={status.desired_healthy} disruptionsAllowed={status.disruptions_allowed} "
        f"expectedPods={status.expected_pods} observedGeneration={status.observed_generation}"
    )


def describe_pods(pods: list[client.V1Pod]) -> str:
    if not pods:
        return "no pods"
    parts = []
    for pod in sorted(pods, key=lambda p: p.metadata.name):
        state = "Ready" if pod_healthy(pod) else (pod.status.phase if pod.status else "?")
        if pod.metadata.deletion_timestamp is not None:
            state = "Terminating"
        parts.append(f"{pod.metadata.name} {state} on {pod.spec.node_name or 'no node'}")
    return ", ".join(parts)


def pods_per_node(pods: list[client.V1Pod]) -> dict[str, int]:
    """Healthy pods per node."""
    counts: dict[str, int] = {}
    for pod in pods:
        if pod_healthy(pod) and pod.spec.node_name:
            counts[pod.spec.node_name] = counts.get(pod.spec.node_name, 0) + 1
    return counts
