"""What the autoscaler suite reads, computes and waits for.

- The autoscaler's own account of itself: the Cluster Autoscaler status ConfigMap in both of its
  formats (YAML from 1.30, the plain text before), Karpenter's NodePool conditions.
- The node groups' Auto Scaling groups as AWS sees them: discovery tags, min/max/desired.
- Free capacity from allocatable and the requests of the pods on each node, and the pause
  workload sized from it so that exactly ``extra_nodes`` more nodes are needed.
- Scale events (TriggeredScaleUp / NotTriggerScaleUp) and a node-count timeline.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import boto3
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

from clustergate.config import AutoscalerSection, NodeGroup
from clustergate.kube import Cluster, list_all
from clustergate.runctx import RESTORE_LABEL, RESTORE_SIZES, RunContext

LAST_UPDATED = "cluster-autoscaler.kubernetes.io/last-updated"
ENABLED_TAG = "k8s.io/cluster-autoscaler/enabled"
NODEGROUP_LABELS = ("eks.amazonaws.com/nodegroup", "karpenter.sh/nodepool")
TO_BE_DELETED_TAINT = "ToBeDeletedByClusterAutoscaler"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
#: A pause pod asks for this share of the smallest node's allocatable CPU: more than half, so
#: that no node of that size holds two.
PAUSE_CPU_SHARE = Decimal("0.6")
PAUSE_MEMORY = 16 * 1024 * 1024
SCALE_UP_EVENTS = ("TriggeredScaleUp", "NotTriggerScaleUp")
#: The run-namespace ConfigMap that records the ASGs' desired capacity for ``--sweep``.
RESTORE_SIZES_CONFIGMAP = "autoscaler-restore-sizes"
#: The event an autoscaler puts on a pod it is adding capacity for, by autoscaler.kind.
TRIGGERED = {"cluster-autoscaler": "TriggeredScaleUp", "karpenter": "Nominated"}
#: Karpenter's pod events: Nominated, or FailedScheduling with why (its own, not the scheduler's).
KARPENTER_EVENTS = ("Nominated", "FailedScheduling")


class StatusFormatError(ValueError):
    """The status text is in neither known format."""


# --- the Cluster Autoscaler status ---------------------------------------------------------


@dataclass(frozen=True)
class GroupHealth:
    name: str
    health: str
    min_size: int
    max_size: int
    target: int
    ready: int
    registered: int


@dataclass(frozen=True)
class AutoscalerStatus:
    format: str  # "yaml" (1.30+) or "text"
    updated: dt.datetime | None
    health: str
    scale_up: str
    scale_down: str
    groups: tuple[GroupHealth, ...] = ()

    def age_s(self, now: dt.datetime) -> float | None:
        return None if self.updated is None else (now - self.updated).total_seconds()

    def group(self, name: str) -> GroupHealth | None:
        return next((g for g in self.groups if g.name == name), None)


_GO_TIME = re.compile(r"(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)(?:\.(\d+))?\s*(Z|[+-]\d\d:?\d\d)?")


def parse_go_time(text: str) -> dt.datetime:
    """Go's time.String() (``2024-05-21 09:33:19.946587318 +0000 UTC m=+1.2``) or RFC 3339."""
    match = _GO_TIME.search(text)
    if not match:
        raise StatusFormatError(f"not a time: {text!r}")
    stamp, fraction, zone = match.groups()
    moment = dt.datetime.fromisoformat(stamp.replace(" ", "T"))
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    offset = dt.timedelta(0)
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return moment.replace(microsecond=micros, tzinfo=dt.timezone(offset)).astimezone(dt.UTC)


def parse_status(text: str, annotations: dict[str, str] | None = None) -> AutoscalerStatus:
    """The status ConfigMap's ``status`` key, YAML or plain text; the last-updated annotation
    (when present) says when it was written."""
    stamp = (annotations or {}).get(LAST_UPDATED)
    updated = parse_go_time(stamp) if stamp else None
    if text.lstrip().startswith("Cluster-autoscaler status at"):
        return _parse_text(text, updated)
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise StatusFormatError(
            f"status is neither YAML nor the plain-text format: {error}"
        ) from None
    if not isinstance(document, dict) or "clusterWide" not in document:
        raise StatusFormatError("status has no clusterWide section")
    return _parse_yaml(document, updated)


def _parse_yaml(document: dict[str, Any], updated: dt.datetime | None) -> AutoscalerStatus:
    wide = document.get("clusterWide") or {}
    if updated is None and document.get("time"):
        updated = parse_go_time(str(document["time"]))
    groups = []
    for group in document.get("nodeGroups") or []:
        health = group.get("health") or {}
        registered = ((health.get("nodeCounts") or {}).get("registered")) or {}
        groups.append(
            GroupHealth(
                name=str(group.get("name")),
                health=str(health.get("status", "")),
                min_size=int(health.get("minSize", 0)),
                max_size=int(health.get("maxSize", 0)),
                target=int(health.get("cloudProviderTarget", 0)),
                ready=int(registered.get("ready", 0)),
                registered=int(registered.get("total", 0)),
            )
        )
    return AutoscalerStatus(
        format="yaml",
        updated=updated,
        health=str((wide.get("health") or {}).get("status", "")),
        scale_up=str((wide.get("scaleUp") or {}).get("status", "")),
        scale_down=str((wide.get("scaleDown") or {}).get("status", "")),
        groups=tuple(groups),
    )


_TEXT_HEADER = re.compile(r"Cluster-autoscaler status at (.+?):\s*$", re.MULTILINE)
_TEXT_FIELD = re.compile(r"^\s*(Name|Health|ScaleUp|ScaleDown):\s+(\S+)(.*)$")


def _counts(details: str) -> dict[str, int]:
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", details)}


def _parse_text(text: str, updated: dt.datetime | None) -> AutoscalerStatus:
    header = _TEXT_HEADER.search(text)
    if updated is None and header:
        updated = parse_go_time(header.group(1))
    wide: dict[str, str] = {}
    groups: list[GroupHealth] = []
    section = ""
    name = ""
    for line in text.splitlines():
        if line.startswith("Cluster-wide:"):
            section = "wide"
        elif line.startswith("NodeGroups:"):
            section = "groups"
        match = _TEXT_FIELD.match(line)
        if not match:
            continue
        key, value, rest = match.groups()
        if section == "wide":
            wide.setdefault(key, value)
        elif section == "groups" and key == "Name":
            name = value
        elif section == "groups" and key == "Health" and name:
            counts = _counts(rest)
            groups.append(
                GroupHealth(
                    name=name,
                    health=value,
                    min_size=counts.get("minSize", 0),
                    max_size=counts.get("maxSize", 0),
                    target=counts.get("cloudProviderTarget", 0),
                    ready=counts.get("ready", 0),
                    registered=counts.get("registered", 0),
                )
            )
    if "Health" not in wide:
        raise StatusFormatError("plain-text status has no Cluster-wide Health line")
    return AutoscalerStatus(
        format="text",
        updated=updated,
        health=wide["Health"],
        scale_up=wide.get("ScaleUp", ""),
        scale_down=wide.get("ScaleDown", ""),
        groups=tuple(groups),
    )


def read_status(cluster: Cluster, section: AutoscalerSection) -> AutoscalerStatus:
    where = f"ConfigMap {section.namespace}/{section.status_configmap}"
    try:
        found = cluster.core().read_namespaced_config_map(
            section.status_configmap, section.namespace
        )
    except ApiException as error:
        if error.status == 404:
            raise AssertionError(
                f"{where} does not exist: the cluster autoscaler has never written its status "
                f"(is it running with --write-status-configmap=true?)"
            ) from None
        raise
    text = (found.data or {}).get("status")
    if not text:
        raise AssertionError(f"{where} has no 'status' key")
    try:
        return parse_status(text, found.metadata.annotations)
    except StatusFormatError as error:
        raise AssertionError(f"{where}: {error}") from None


def status_problems(
    status: AutoscalerStatus, now: dt.datetime, max_age_s: float, where: str
) -> list[str]:
    problems = []
    age = status.age_s(now)
    if age is None:
        problems.append(f"{where} says nowhere when it was written")
    elif age > max_age_s:
        problems.append(
            f"{where} was last written {age:.0f}s ago (limit {max_age_s:.0f}s): the autoscaler "
            "is not running its loop (scaled to zero, crash-looping, or not the leader)"
        )
    if status.health != "Healthy":
        problems.append(f"{where} reports cluster-wide health {status.health!r}, not Healthy")
    return problems


def deployment_problem(cluster: Cluster, section: AutoscalerSection) -> str | None:
    """Why the autoscaler Deployment is not running (None when it has an available replica)."""
    where = f"Deployment {section.namespace}/{section.deployment}"
    try:
        deployment = cluster.apps().read_namespaced_deployment(
            section.deployment, section.namespace
        )
    except ApiException as error:
        if error.status == 404:
            return f"{where} does not exist"
        raise
    wanted = deployment.spec.replicas
    available = deployment.status.available_replicas or 0
    if available >= 1:
        return None
    return (
        f"{where} has {available} available replica(s) of {wanted} wanted: nothing is "
        f"autoscaling (kubectl -n {section.namespace} describe deployment {section.deployment})"
    )


# --- Auto Scaling groups -------------------------------------------------------------------


@dataclass(frozen=True)
class GroupSizes:
    nodegroup: str
    asg: str
    min_size: int
    max_size: int
    desired: int
    tags: dict[str, str] = field(default_factory=dict)


def node_group_asgs(
    session: boto3.Session, cluster_name: str, node_groups: Iterable[NodeGroup]
) -> list[GroupSizes]:
    """Each configured node group's Auto Scaling group(s): named in the config, else from
    EKS ``describe_nodegroup`` (resources.autoScalingGroups)."""
    eks = session.client("eks")
    autoscaling = session.client("autoscaling")
    names: dict[str, str] = {}
    for group in node_groups:
        if group.asg:
            names[group.asg] = group.name
            continue
        described = eks.describe_nodegroup(clusterName=cluster_name, nodegroupName=group.name)
        for asg in described["nodegroup"].get("resources", {}).get("autoScalingGroups", []):
            names[asg["name"]] = group.name
    if not names:
        return []
    found = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=sorted(names))
    sizes = [
        GroupSizes(
            nodegroup=names[group["AutoScalingGroupName"]],
            asg=group["AutoScalingGroupName"],
            min_size=int(group["MinSize"]),
            max_size=int(group["MaxSize"]),
            desired=int(group["DesiredCapacity"]),
            tags={tag["Key"]: tag["Value"] for tag in group.get("Tags", [])},
        )
        for group in found["AutoScalingGroups"]
    ]
    missing = sorted(set(names) - {size.asg for size in sizes})
    if missing:
        raise AssertionError(
            f"Auto Scaling group(s) {', '.join(missing)} of node group(s) "
            f"{', '.join(names[m] for m in missing)} do not exist (describe_auto_scaling_groups)"
        )
    return sorted(sizes, key=lambda s: s.asg)


def discovery_tag_problems(group: GroupSizes, cluster_name: str) -> list[str]:
    wanted = (ENABLED_TAG, f"k8s.io/cluster-autoscaler/{cluster_name}")
    missing = [tag for tag in wanted if tag not in group.tags]
    if not missing:
        return []
    return [
        f"ASG {group.asg} (node group {group.nodegroup}) lacks auto-discovery tag(s) "
        f"{', '.join(missing)}: the autoscaler will never scale it"
    ]


def size_problems(group: GroupSizes) -> list[str]:
    where = f"ASG {group.asg} (node group {group.nodegroup})"
    sizes = f"min={group.min_size} desired={group.desired} max={group.max_size}"
    if not group.min_size <= group.desired <= group.max_size:
        return [f"{where} has desired outside min..max ({sizes})"]
    if group.desired >= group.max_size:
        return [f"{where} is at its maximum ({sizes}): no headroom to scale up"]
    return []


def set_desired(session: boto3.Session, asg: str, desired: int) -> None:
    session.client("autoscaling").set_desired_capacity(
        AutoScalingGroupName=asg, DesiredCapacity=desired, HonorCooldown=False
    )


# --- Karpenter -----------------------------------------------------------------------------


def read_nodepools(cluster: Cluster) -> list[dict[str, Any]]:
    """karpenter.sh NodePools (v1, else v1beta1) as plain dicts."""
    api = client.CustomObjectsApi(cluster.api)
    for version in ("v1", "v1beta1"):
        try:
            listed = api.list_cluster_custom_object("karpenter.sh", version, "nodepools")
        except ApiException as error:
            if error.status == 404:
                continue
            raise
        return list(listed.get("items") or [])
    raise AssertionError("no karpenter.sh NodePool API (v1 or v1beta1): is Karpenter installed?")


def read_node_class(cluster: Cluster, ref: dict[str, Any]) -> dict[str, Any] | None:
    """The NodeClass a NodePool's ``nodeClassRef`` names (e.g. an EC2NodeClass), or None."""
    group, kind, name = ref.get("group"), ref.get("kind"), ref.get("name")
    if not (group and kind and name):
        return None
    plural = kind.lower() + ("es" if kind.lower().endswith("s") else "s")
    api = client.CustomObjectsApi(cluster.api)
    for version in ("v1", "v1beta1"):
        try:
            found: dict[str, Any] = api.get_cluster_custom_object(group, version, plural, name)
        except ApiException as error:
            if error.status == 404:
                continue
            raise
        return found
    return None


def node_classes_of(cluster: Cluster, nodepools: list[dict[str, Any]]) -> NodeClasses:
    """Each NodePool's NodeClass by pool name (None where it does not exist)."""
    return {
        pool["metadata"]["name"]: read_node_class(cluster, _node_class_ref(pool))
        for pool in nodepools
    }


NodeClasses = dict[str, dict[str, Any] | None]


def _node_class_ref(pool: dict[str, Any]) -> dict[str, Any]:
    spec = (pool.get("spec") or {}).get("template", {}).get("spec") or {}
    return dict(spec.get("nodeClassRef") or {})


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or []}


def _not_true(obj: dict[str, Any]) -> str:
    """The conditions that are not True, as "SubnetsReady False (reason: message)"."""
    failing = [
        f"{kind} {c.get('status')} ({c.get('reason')}: {c.get('message')})"
        for kind, c in _conditions(obj).items()
        if kind != "Ready" and c.get("status") != "True"
    ]
    return "; ".join(failing) or "no condition says why"


def nodepool_problems(
    nodepools: list[dict[str, Any]], node_classes: NodeClasses | None = None
) -> list[str]:
    """Why Karpenter cannot provision from these pools: a pool not Ready (with its NodeClass's
    failing conditions), or a pool whose usage has reached ``spec.limits``."""
    if not nodepools:
        return ["no Karpenter NodePool exists: Karpenter has nothing to provision from"]
    problems = []
    for pool in nodepools:
        name = pool.get("metadata", {}).get("name")
        ready = _conditions(pool).get("Ready")
        if ready is None or ready.get("status") != "True":
            detail = f"{ready.get('reason')}: {ready.get('message')}" if ready else "no condition"
            problem = f"NodePool {name} is not Ready ({detail})"
            ref = _node_class_ref(pool)
            if node_classes is not None and name in node_classes:
                problem += _node_class_detail(ref, node_classes[name])
            problems.append(problem)
        problems.extend(limit_problems(pool))
    return problems


def _node_class_detail(ref: dict[str, Any], node_class: dict[str, Any] | None) -> str:
    where = f"{ref.get('kind')} {ref.get('name')}"
    if node_class is None:
        return f"; its {where} does not exist"
    ready = _conditions(node_class).get("Ready")
    if ready is not None and ready.get("status") == "True":
        return f"; its {where} is Ready"
    plural = f"{str(ref.get('kind')).lower()}es.{ref.get('group')}"
    return (
        f"; its {where} is not Ready: {_not_true(node_class)} "
        f"(kubectl describe {plural} {ref.get('name')})"
    )


def limit_problems(pool: dict[str, Any]) -> list[str]:
    """A pool whose ``status.resources`` reached a ``spec.limits`` entry launches no node."""
    name = pool.get("metadata", {}).get("name")
    limits = (pool.get("spec") or {}).get("limits") or {}
    used = (pool.get("status") or {}).get("resources") or {}
    reached = [
        f"{resource} {used.get(resource, '0')} in use of limit {limit}"
        for resource, limit in sorted(limits.items())
        if parse_quantity(str(used.get(resource, "0"))) >= parse_quantity(str(limit))
    ]
    if not reached:
        return []
    return [
        f"NodePool {name} is at its limits ({', '.join(reached)}): Karpenter launches no node "
        f"for it (kubectl get nodepool {name} -o jsonpath='{{.spec.limits}} {{.status.resources}}')"
    ]


# --- capacity ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeCapacity:
    name: str
    group: str | None
    allocatable_cpu: Decimal  # cores
    allocatable_memory: Decimal  # bytes
    allocatable_pods: int
    requested_cpu: Decimal
    requested_memory: Decimal
    pods: int

    @property
    def free_cpu(self) -> Decimal:
        return self.allocatable_cpu - self.requested_cpu

    @property
    def free_memory(self) -> Decimal:
        return self.allocatable_memory - self.requested_memory


def node_group_of(node: client.V1Node) -> str | None:
    labels = node.metadata.labels or {}
    return next((labels[key] for key in NODEGROUP_LABELS if key in labels), None)


def _ready(node: client.V1Node) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def schedulable(node: client.V1Node) -> bool:
    taints = node.spec.taints or []
    return (
        _ready(node)
        and not node.spec.unschedulable
        and not any(t.key == TO_BE_DELETED_TAINT for t in taints)
    )


def pod_requests(pod: client.V1Pod) -> tuple[Decimal, Decimal]:
    """(cpu cores, memory bytes) the scheduler counts: containers summed, or the largest init
    container when that is more."""

    def of(containers: list[client.V1Container]) -> tuple[Decimal, Decimal]:
        cpu = mem = Decimal(0)
        for container in containers:
            requests = (container.resources.requests if container.resources else None) or {}
            cpu += parse_quantity(requests.get("cpu", "0"))
            mem += parse_quantity(requests.get("memory", "0"))
        return cpu, mem

    cpu, mem = of(pod.spec.containers or [])
    for init in pod.spec.init_containers or []:
        init_cpu, init_mem = of([init])
        cpu, mem = max(cpu, init_cpu), max(mem, init_mem)
    return cpu, mem


def node_capacities(nodes: list[client.V1Node], pods: list[client.V1Pod]) -> list[NodeCapacity]:
    """Allocatable and requested per node, from the pods bound to it and not finished."""
    requested: dict[str, tuple[Decimal, Decimal, int]] = {}
    for pod in pods:
        if not pod.spec.node_name or pod.status.phase in ("Succeeded", "Failed"):
            continue
        cpu, mem = pod_requests(pod)
        old = requested.get(pod.spec.node_name, (Decimal(0), Decimal(0), 0))
        requested[pod.spec.node_name] = (old[0] + cpu, old[1] + mem, old[2] + 1)
    capacities = []
    for node in nodes:
        allocatable = node.status.allocatable or {}
        cpu, mem, count = requested.get(node.metadata.name, (Decimal(0), Decimal(0), 0))
        capacities.append(
            NodeCapacity(
                name=node.metadata.name,
                group=node_group_of(node),
                allocatable_cpu=parse_quantity(allocatable.get("cpu", "0")),
                allocatable_memory=parse_quantity(allocatable.get("memory", "0")),
                allocatable_pods=int(allocatable.get("pods", "110")),
                requested_cpu=cpu,
                requested_memory=mem,
                pods=count,
            )
        )
    return capacities


@dataclass(frozen=True)
class PausePlan:
    """Pause pods of ``cpu_millis``/``memory_bytes`` each; ``slots`` of them fit the free
    capacity now, ``replicas`` = slots + extra_nodes."""

    cpu_millis: int
    memory_bytes: int
    slots: int
    replicas: int

    def describe(self) -> str:
        return (
            f"{self.replicas} pause pods of {self.cpu_millis}m CPU: {self.slots} fit the free "
            f"capacity, {self.replicas - self.slots} need new nodes"
        )


def plan_pause_pods(capacities: list[NodeCapacity], extra_nodes: int) -> PausePlan:
    """Size pause pods so that each node of the smallest size takes at most one and the free
    capacity takes exactly ``slots``; ``extra_nodes`` more pods need one new node each."""
    if not capacities:
        raise AssertionError("no schedulable node in the configured node groups to measure")
    smallest = min(c.allocatable_cpu for c in capacities)
    cpu = Decimal(math.ceil(smallest * PAUSE_CPU_SHARE * 1000)) / 1000
    memory = Decimal(PAUSE_MEMORY)
    slots = 0
    for node in capacities:
        by_cpu = int(node.free_cpu // cpu) if node.free_cpu > 0 else 0
        by_mem = int(node.free_memory // memory) if node.free_memory > 0 else 0
        slots += max(0, min(by_cpu, by_mem, node.allocatable_pods - node.pods))
    return PausePlan(int(cpu * 1000), int(memory), slots, slots + extra_nodes)


def pause_deployment(
    run: RunContext, name: str, plan: PausePlan, node_groups: Iterable[str]
) -> client.V1Deployment:
    """The pause workload, held to the configured node groups when there are any."""
    labels = {"app": name}
    groups = sorted(node_groups)
    affinity = None
    if groups:
        affinity = client.V1Affinity(
            node_affinity=client.V1NodeAffinity(
                required_during_scheduling_ignored_during_execution=client.V1NodeSelector(
                    node_selector_terms=[
                        client.V1NodeSelectorTerm(
                            match_expressions=[
                                client.V1NodeSelectorRequirement(
                                    key=key, operator="In", values=groups
                                )
                            ]
                        )
                        for key in NODEGROUP_LABELS
                    ]
                )
            )
        )
    container = client.V1Container(
        name="pause",
        image=PAUSE_IMAGE,
        resources=client.V1ResourceRequirements(
            requests={"cpu": f"{plan.cpu_millis}m", "memory": str(plan.memory_bytes)}
        ),
    )
    return client.V1Deployment(
        metadata=run.metadata(name),
        spec=client.V1DeploymentSpec(
            replicas=plan.replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={**run.labels, **labels}),
                spec=client.V1PodSpec(
                    containers=[container],
                    affinity=affinity,
                    termination_grace_period_seconds=0,
                ),
            ),
        ),
    )


# --- events and timeline -------------------------------------------------------------------


@dataclass(frozen=True)
class ScaleEvent:
    reason: str
    pod: str
    message: str
    count: int


def scale_up_events(cluster: Cluster, namespace: str, pods: set[str]) -> list[ScaleEvent]:
    """The autoscaler's events about ``pods`` in ``namespace``: cluster-autoscaler's
    TriggeredScaleUp / NotTriggerScaleUp, Karpenter's Nominated / FailedScheduling."""
    listed = cluster.core().list_namespaced_event(namespace)
    return [
        ScaleEvent(event.reason, event.involved_object.name, event.message or "", event.count or 1)
        for event in listed.items
        if (
            event.reason in SCALE_UP_EVENTS
            or (
                event.reason in KARPENTER_EVENTS
                and (event.source.component if event.source else "") == "karpenter"
            )
        )
        and event.involved_object.kind == "Pod"
        and event.involved_object.name in pods
    ]


def describe_events(events: list[ScaleEvent]) -> str:
    if not events:
        return "no scale-up event (TriggeredScaleUp, NotTriggerScaleUp, Nominated) for them"
    messages = sorted({f"{e.reason}: {e.message}" for e in events})
    return "; ".join(messages)


class NodeTimeline:
    """Samples the node count (all, and Ready) in a thread; keeps the changes only."""

    def __init__(self, cluster: Cluster, interval_s: float = 1.0) -> None:
        self._core = cluster.core()
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="node-timeline", daemon=True)
        self.started = time.monotonic()
        self.points: list[tuple[float, int, int]] = []

    def __enter__(self) -> NodeTimeline:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval * 5)
        self.sample()

    def sample(self) -> None:
        try:
            nodes = list_all(self._core.list_node, _request_timeout=10)
        except Exception:  # a sample lost to a blip is a gap in a plot, not a failure
            return
        count, ready = len(nodes), sum(1 for n in nodes if _ready(n))
        if not self.points or self.points[-1][1:] != (count, ready):
            self.points.append((round(time.monotonic() - self.started, 1), count, ready))

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()


def restore_desired(session: boto3.Session, before: list[GroupSizes]) -> None:
    """Put each ASG's desired capacity back where it was, where it changed."""
    autoscaling = session.client("autoscaling")
    names = [group.asg for group in before]
    now = {
        group["AutoScalingGroupName"]: int(group["DesiredCapacity"])
        for group in autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=names)[
            "AutoScalingGroups"
        ]
    }
    for group in before:
        if now.get(group.asg, group.desired) != group.desired:
            set_desired(session, group.asg, group.desired)


def _describe_sizes(sizes: Iterable[tuple[str, int]]) -> str:
    return "desired capacity of " + ", ".join(f"ASG {asg} back to {n}" for asg, n in sizes)


def sizes_record(sizes: list[GroupSizes]) -> dict[str, str]:
    """What :func:`restore_recorded_sizes` needs to put the sizes back, as ConfigMap data."""
    pairs = [(group.asg, group.desired) for group in sizes]
    return {
        "sizes": json.dumps([{"asg": asg, "desired": desired} for asg, desired in pairs]),
        "description": _describe_sizes(pairs),
        "recorded_at": dt.datetime.now(dt.UTC).isoformat(),
    }


def guard_desired(run: RunContext, session: boto3.Session, sizes: list[GroupSizes]) -> None:
    """Put each ASG's desired capacity back when the check ends, and record it in the run
    namespace so that ``--sweep`` can put it back after a run killed before its teardown."""
    core = run.cluster.core()
    metadata = run.metadata(RESTORE_SIZES_CONFIGMAP, **{RESTORE_LABEL: RESTORE_SIZES})
    core.create_namespaced_config_map(
        run.namespace, client.V1ConfigMap(metadata=metadata, data=sizes_record(sizes))
    )

    def put_back() -> None:
        restore_desired(session, sizes)
        core.delete_namespaced_config_map(RESTORE_SIZES_CONFIGMAP, run.namespace)

    run.on_teardown("restore the node groups' ASG desired capacity", put_back)


def restore_recorded_sizes(data: dict[str, str], session: boto3.Session) -> str:
    """Restore what :func:`guard_desired` recorded (the sweep's callback)."""
    pairs = [(str(item["asg"]), int(item["desired"])) for item in json.loads(data["sizes"])]
    restore_desired(
        session, [GroupSizes("", asg, min_size=0, max_size=0, desired=n) for asg, n in pairs]
    )
    return _describe_sizes(pairs).replace("desired capacity of", "set the desired capacity of", 1)


def explain_scale_up(
    cluster: Cluster,
    section: AutoscalerSection,
    namespace: str,
    pending: set[str],
    sizes: list[GroupSizes],
) -> str:
    """What the autoscaler said and did about ``pending`` pods: its events, its status, and
    the groups' sizes, for a failure message."""
    parts = [f"autoscaler events: {describe_events(scale_up_events(cluster, namespace, pending))}"]
    if section.kind == "cluster-autoscaler":
        try:
            status = read_status(cluster, section)
        except AssertionError as error:
            parts.append(str(error))
        else:
            groups = ", ".join(
                f"{g.name} target={g.target} ready={g.ready} max={g.max_size}"
                for g in status.groups
            )
            parts.append(
                f"status: health {status.health}, scaleUp {status.scale_up} ({groups or '-'})"
            )
    if section.kind == "karpenter":
        nodepools = read_nodepools(cluster)
        problems = nodepool_problems(nodepools, node_classes_of(cluster, nodepools))
        parts.append("NodePools: " + ("; ".join(problems) or "all Ready, below their limits"))
    if sizes:
        parts.append(
            "ASGs before the check: "
            + ", ".join(f"{s.asg} desired={s.desired} max={s.max_size}" for s in sizes)
        )
    return "; ".join(parts)
