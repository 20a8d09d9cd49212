"""Server-side printing: objects as meta.k8s.io Tables, the way ``kubectl get`` asks for them
(Accept ``application/json;as=Table;v=v1;g=meta.k8s.io``).

Columns and cells follow k8s.io/kubernetes pkg/printers/internalversion/printers.go. The server
always prints the wide columns (priority 1); kubectl shows them only with ``-o wide``.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clustergate.twin.apiserver.json_path import value_at
from clustergate.twin.apiserver.resources import ResourceType
from clustergate.twin.apiserver.selectors import selector_string

Obj = dict[str, Any]
Column = tuple[str, str, int]  # name, type, priority
Printer = Callable[[Obj, datetime.datetime], list[Any]]

TABLE_GROUP = "meta.k8s.io"
TABLE_VERSIONS = ("v1", "v1beta1")
INCLUDE_OBJECT = ("None", "Metadata", "Object")
_NAME: Column = ("Name", "string", 0)
_AGE: Column = ("Age", "string", 0)
_WORKLOAD_WIDE: tuple[Column, ...] = (
    ("Containers", "string", 1),
    ("Images", "string", 1),
    ("Selector", "string", 1),
)


@dataclass(frozen=True)
class TableRequest:
    """What an Accept header and the includeObject parameter asked for."""

    version: str
    include_object: str = "Metadata"


def table_request(accept: str, include_object: str | None) -> TableRequest | None:
    """The Table the client accepts first, or None when it wants plain objects first."""
    for media_range in accept.split(","):
        media_type, *raw_params = (part.strip() for part in media_range.split(";"))
        params = dict(p.split("=", 1) for p in raw_params if "=" in p)
        if media_type not in ("application/json", "*/*"):
            continue
        if params.get("as") != "Table":
            return None
        if params.get("g") == TABLE_GROUP and params.get("v") in TABLE_VERSIONS:
            include = include_object or "Metadata"
            if include not in INCLUDE_OBJECT:
                include = "Metadata"
            return TableRequest(params["v"], include)
    return None


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if rest == 0 else f"{years}y{rest}d"
    return f"{hours // 24 // 365}y"


def _parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _since(text: str | None, now: datetime.datetime) -> str:
    moment = _parse_time(text)
    if moment is None:
        return "<unknown>"
    return human_duration((now - moment).total_seconds())


def _age(obj: Obj, now: datetime.datetime) -> str:
    return _since(obj["metadata"].get("creationTimestamp"), now)


def _format_labels(labels: dict[str, str] | None) -> str:
    """k8s.io/apimachinery/pkg/labels.FormatLabels."""
    if not labels:
        return "<none>"
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def _workload_wide(obj: Obj) -> list[Any]:
    spec = obj.get("spec") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return [
        ",".join(c.get("name", "") for c in containers),
        ",".join(c.get("image", "") for c in containers),
        selector_string(spec.get("selector") or {}) or "<none>",
    ]


# ---- pods


def _pod_restarts(statuses: list[Obj], now: datetime.datetime) -> str:
    restarts = 0
    last: datetime.datetime | None = None
    for container in statuses:
        restarts += int(container.get("restartCount") or 0)
        terminated = (container.get("lastState") or {}).get("terminated") or {}
        finished = _parse_time(terminated.get("finishedAt"))
        if finished is not None and (last is None or finished > last):
            last = finished
    if restarts and last is not None:
        return f"{restarts} ({human_duration((now - last).total_seconds())} ago)"
    return str(restarts)


def _init_reason(pod: Obj) -> str | None:
    """The Init:... status while init containers have not all succeeded, else None."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    init_specs = spec.get("initContainers") or []
    for index, container in enumerate(status.get("initContainerStatuses") or []):
        state = container.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated is not None and terminated.get("exitCode", 0) == 0:
            continue
        if terminated is not None:
            if terminated.get("reason"):
                return "Init:" + terminated["reason"]
            if terminated.get("signal"):
                return f"Init:Signal:{terminated['signal']}"
            return f"Init:ExitCode:{terminated.get('exitCode', 0)}"
        if waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            return "Init:" + waiting["reason"]
        return f"Init:{index}/{len(init_specs)}"
    return None


def _initialized(status: Obj) -> bool:
    return any(
        c.get("type") == "Initialized" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def _pod_row(pod: Obj, now: datetime.datetime) -> list[Any]:
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    total = len(spec.get("containers") or [])
    ready = 0
    init_reason = _init_reason(pod)
    statuses = status.get("containerStatuses") or []
    if init_reason is not None and not _initialized(status):
        reason = init_reason
        restarts = _pod_restarts(status.get("initContainerStatuses") or [], now)
    else:
        restarts = _pod_restarts(statuses, now)
        running = False
        for container in reversed(statuses):
            state = container.get("state") or {}
            waiting, terminated = state.get("waiting") or {}, state.get("terminated")
            if waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated is not None and terminated.get("reason"):
                reason = terminated["reason"]
            elif terminated is not None:
                signal = terminated.get("signal")
                reason = (
                    f"Signal:{signal}" if signal else f"ExitCode:{terminated.get('exitCode', 0)}"
                )
            elif container.get("ready") and state.get("running") is not None:
                running = True
                ready += 1
        if reason == "Completed" and running:
            ready_condition = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions") or []
            )
            reason = "Running" if ready_condition else "NotReady"
    if meta.get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"
    ips = status.get("podIPs") or []
    pod_ip = ips[0].get("ip") if ips else status.get("podIP")
    gates = spec.get("readinessGates") or []
    gate_text = "<none>"
    if gates:
        true = {c.get("type") for c in status.get("conditions") or [] if c.get("status") == "True"}
        passed = sum(1 for gate in gates if gate.get("conditionType") in true)
        gate_text = f"{passed}/{len(gates)}"
    return [
        meta["name"],
        f"{ready}/{total}",
        reason,
        restarts,
        _age(pod, now),
        pod_ip or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        gate_text,
    ]


# ---- nodes


def _node_roles(labels: dict[str, str]) -> str:
    roles = set()
    for key, value in labels.items():
        if key.startswith("node-role.kubernetes.io/"):
            role = key.removeprefix("node-role.kubernetes.io/")
            if role:
                roles.add(role)
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    return ",".join(sorted(roles)) or "<none>"


def _node_address(node: Obj, kind: str) -> str:
    for address in (node.get("status") or {}).get("addresses") or []:
        if address.get("type") == kind:
            return str(address.get("address"))
    return "<none>"


def _node_row(node: Obj, now: datetime.datetime) -> list[Any]:
    status = node.get("status") or {}
    ready = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Ready"),
        None,
    )
    states = (
        ["Unknown"] if ready is None else ["Ready" if ready.get("status") == "True" else "NotReady"]
    )
    if (node.get("spec") or {}).get("unschedulable"):
        states.append("SchedulingDisabled")
    info = status.get("nodeInfo") or {}
    return [
        node["metadata"]["name"],
        ",".join(states),
        _node_roles(node["metadata"].get("labels") or {}),
        _age(node, now),
        info.get("kubeletVersion", ""),
        _node_address(node, "InternalIP"),
        _node_address(node, "ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


# ---- workloads


def _deployment_row(obj: Obj, now: datetime.datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [
        obj["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        _age(obj, now),
        *_workload_wide(obj),
    ]


def _replicaset_row(obj: Obj, now: datetime.datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [
        obj["metadata"]["name"],
        spec.get("replicas", 0),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        _age(obj, now),
        *_workload_wide(obj),
    ]


def _daemonset_row(obj: Obj, now: datetime.datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    template_spec = (spec.get("template") or {}).get("spec") or {}
    return [
        obj["metadata"]["name"],
        status.get("desiredNumberScheduled", 0),
        status.get("currentNumberScheduled", 0),
        status.get("numberReady", 0),
        status.get("updatedNumberScheduled", 0),
        status.get("numberAvailable", 0),
        _format_labels(template_spec.get("nodeSelector")),
        _age(obj, now),
        *_workload_wide(obj),
    ]


def _has_condition(status: Obj, kind: str) -> bool:
    return any(
        c.get("type") == kind and c.get("status") == "True" for c in status.get("conditions") or []
    )


def _job_row(obj: Obj, now: datetime.datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    succeeded = status.get("succeeded", 0)
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif (spec.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    started, finished = (
        _parse_time(status.get("startTime")),
        _parse_time(status.get("completionTime")),
    )
    took = ""
    if started is not None:
        took = human_duration(((finished or now) - started).total_seconds())
    state = "Running"
    for condition, shown in (("Complete", "Complete"), ("Failed", "Failed")):
        if _has_condition(status, condition):
            state = shown
            break
    else:
        if obj["metadata"].get("deletionTimestamp"):
            state = "Terminating"
        elif _has_condition(status, "Suspended"):
            state = "Suspended"
        elif _has_condition(status, "FailureTarget"):
            state = "FailureTarget"
        elif _has_condition(status, "SuccessCriteriaMet"):
            state = "SuccessCriteriaMet"
    return [obj["metadata"]["name"], state, completions, took, _age(obj, now), *_workload_wide(obj)]


# ---- services, budgets and the rest


def _service_external_ip(spec: Obj, status: Obj) -> str:
    external = list(spec.get("externalIPs") or [])
    kind = spec.get("type") or "ClusterIP"
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) or "<none>"
    if kind == "LoadBalancer":
        ingress = (status.get("loadBalancer") or {}).get("ingress") or []
        balancers = [
            i.get("ip") or i.get("hostname") for i in ingress if i.get("ip") or i.get("hostname")
        ]
        return ",".join([*balancers, *external]) or "<pending>"
    if kind == "ExternalName":
        return str(spec.get("externalName", ""))
    return "<unknown>"


def _service_row(obj: Obj, now: datetime.datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    ports = []
    for port in spec.get("ports") or []:
        protocol = port.get("protocol", "TCP")
        if port.get("nodePort"):
            ports.append(f"{port['port']}:{port['nodePort']}/{protocol}")
        else:
            ports.append(f"{port['port']}/{protocol}")
    cluster_ips = spec.get("clusterIPs") or []
    return [
        obj["metadata"]["name"],
        spec.get("type") or "ClusterIP",
        cluster_ips[0] if cluster_ips else "<none>",
        _service_external_ip(spec, status),
        ",".join(ports) or "<none>",
        _age(obj, now),
        _format_labels(spec.get("selector")),
    ]


def _budget_row(obj: Obj, now: datetime.datetime) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [
        obj["metadata"]["name"],
        str(spec["minAvailable"]) if spec.get("minAvailable") is not None else "N/A",
        str(spec["maxUnavailable"]) if spec.get("maxUnavailable") is not None else "N/A",
        status.get("disruptionsAllowed", 0),
        _age(obj, now),
    ]


def _namespace_row(obj: Obj, now: datetime.datetime) -> list[Any]:
    phase = (obj.get("status") or {}).get("phase", "")
    return [obj["metadata"]["name"], phase, _age(obj, now)]


def _configmap_row(obj: Obj, now: datetime.datetime) -> list[Any]:
    count = len(obj.get("data") or {}) + len(obj.get("binaryData") or {})
    return [obj["metadata"]["name"], count, _age(obj, now)]


def _lease_row(obj: Obj, now: datetime.datetime) -> list[Any]:
    holder = (obj.get("spec") or {}).get("holderIdentity") or ""
    return [obj["metadata"]["name"], holder, _age(obj, now)]


def _event_row(obj: Obj, now: datetime.datetime) -> list[Any]:
    first = _since(obj.get("firstTimestamp") or obj.get("eventTime"), now)
    last = _since(obj["lastTimestamp"], now) if obj.get("lastTimestamp") else first
    count = obj.get("count") or 1
    series = obj.get("series")
    if series:
        last = _since(series.get("lastObservedTime"), now)
        count = series.get("count", count)
    involved = obj.get("involvedObject") or {}
    kind = str(involved.get("kind", "")).lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = obj.get("source") or {}
    component, instance = source.get("component"), source.get("host")
    if not component:
        component, instance = obj.get("reportingComponent"), obj.get("reportingInstance")
    origin = f"{component or ''}, {instance}" if instance else component or ""
    return [
        last,
        obj.get("type", ""),
        obj.get("reason", ""),
        target,
        involved.get("fieldPath", ""),
        origin,
        str(obj.get("message", "")).strip(),
        first,
        count,
        obj["metadata"]["name"],
    ]


def _service_account_row(obj: Obj, now: datetime.datetime) -> list[Any]:
    return [obj["metadata"]["name"], len(obj.get("secrets") or []), _age(obj, now)]


def _secret_row(obj: Obj, now: datetime.datetime) -> list[Any]:
    count = len(obj.get("data") or {}) + len(obj.get("stringData") or {})
    return [obj["metadata"]["name"], obj.get("type", ""), count, _age(obj, now)]


def _webhooks_row(obj: Obj, now: datetime.datetime) -> list[Any]:
    return [obj["metadata"]["name"], len(obj.get("webhooks") or []), _age(obj, now)]


def _policy_row(obj: Obj, now: datetime.datetime) -> list[Any]:
    spec = obj.get("spec") or {}
    kind = spec.get("paramKind")
    param = f"{kind.get('apiVersion', '')}/{kind.get('kind', '')}" if kind else "<unset>"
    return [obj["metadata"]["name"], len(spec.get("validations") or []), param, _age(obj, now)]


def _policy_binding_row(obj: Obj, now: datetime.datetime) -> list[Any]:
    spec = obj.get("spec") or {}
    ref = spec.get("paramRef") or {}
    param = "/".join(p for p in (ref.get("namespace"), ref.get("name")) if p) or "<unset>"
    return [obj["metadata"]["name"], spec.get("policyName", ""), param, _age(obj, now)]


def _name_age_row(obj: Obj, now: datetime.datetime) -> list[Any]:
    return [obj["metadata"]["name"], _age(obj, now)]


def _created_at_row(obj: Obj, now: datetime.datetime) -> list[Any]:
    return [obj["metadata"]["name"], obj["metadata"].get("creationTimestamp")]


_WORKLOAD_COLUMNS = (_NAME, ("Desired", "integer", 0), ("Current", "integer", 0))
_WEBHOOKS = ((_NAME, ("Webhooks", "integer", 0), _AGE), _webhooks_row)
PRINTERS: dict[str, tuple[tuple[Column, ...], Printer]] = {
    "pods": (
        (
            _NAME,
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            _AGE,
            ("IP", "string", 1),
            ("Node", "string", 1),
            ("Nominated Node", "string", 1),
            ("Readiness Gates", "string", 1),
        ),
        _pod_row,
    ),
    "nodes": (
        (
            _NAME,
            ("Status", "string", 0),
            ("Roles", "string", 0),
            _AGE,
            ("Version", "string", 0),
            ("Internal-IP", "string", 1),
            ("External-IP", "string", 1),
            ("OS-Image", "string", 1),
            ("Kernel-Version", "string", 1),
            ("Container-Runtime", "string", 1),
        ),
        _node_row,
    ),
    "deployments.apps": (
        (
            _NAME,
            ("Ready", "string", 0),
            ("Up-to-date", "string", 0),
            ("Available", "string", 0),
            _AGE,
            *_WORKLOAD_WIDE,
        ),
        _deployment_row,
    ),
    "replicasets.apps": (
        (*_WORKLOAD_COLUMNS, ("Ready", "integer", 0), _AGE, *_WORKLOAD_WIDE),
        _replicaset_row,
    ),
    "daemonsets.apps": (
        (
            *_WORKLOAD_COLUMNS,
            ("Ready", "integer", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Node Selector", "string", 0),
            _AGE,
            *_WORKLOAD_WIDE,
        ),
        _daemonset_row,
    ),
    "jobs.batch": (
        (
            _NAME,
            ("Status", "string", 0),
            ("Completions", "string", 0),
            ("Duration", "string", 0),
            _AGE,
            *_WORKLOAD_WIDE,
        ),
        _job_row,
    ),
    "services": (
        (
            _NAME,
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            _AGE,
            ("Selector", "string", 1),
        ),
        _service_row,
    ),
    "poddisruptionbudgets.policy": (
        (
            _NAME,
            ("Min Available", "string", 0),
            ("Max Unavailable", "string", 0),
            ("Allowed Disruptions", "integer", 0),
            _AGE,
        ),
        _budget_row,
    ),
    "namespaces": ((_NAME, ("Status", "string", 0), _AGE), _namespace_row),
    # CRDs print with the generic registry's default columns, as apiextensions serves them.
    "customresourcedefinitions.apiextensions.k8s.io": (
        (_NAME, ("Created At", "date", 0)),
        _created_at_row,
    ),
    "configmaps": ((_NAME, ("Data", "integer", 0), _AGE), _configmap_row),
    "leases.coordination.k8s.io": ((_NAME, ("Holder", "string", 0), _AGE), _lease_row),
    "serviceaccounts": ((_NAME, ("Secrets", "integer", 0), _AGE), _service_account_row),
    "secrets": ((_NAME, ("Type", "string", 0), ("Data", "integer", 0), _AGE), _secret_row),
    "mutatingwebhookconfigurations.admissionregistration.k8s.io": _WEBHOOKS,
    "validatingwebhookconfigurations.admissionregistration.k8s.io": _WEBHOOKS,
    "validatingadmissionpolicies.admissionregistration.k8s.io": (
        (_NAME, ("Validations", "integer", 0), ("ParamKind", "string", 0), _AGE),
        _policy_row,
    ),
    "validatingadmissionpolicybindings.admissionregistration.k8s.io": (
        (_NAME, ("PolicyName", "string", 0), ("ParamRef", "string", 0), _AGE),
        _policy_binding_row,
    ),
    "events": (
        (
            ("Last Seen", "string", 0),
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Subobject", "string", 1),
            ("Source", "string", 1),
            ("Message", "string", 0),
            ("First Seen", "string", 1),
            ("Count", "string", 1),
            ("Name", "string", 1),
        ),
        _event_row,
    ),
}
_DEFAULT = ((_NAME, _AGE), _name_age_row)


def _custom_printer(rt: ResourceType) -> tuple[tuple[Column, ...], Printer]:
    """A custom resource's columns: Name, then its CRD's additionalPrinterColumns, or Age when
    it names none (apiextensions' table convertor)."""
    if not rt.printer_columns:
        return _DEFAULT
    paths = [path for _, _, path, _ in rt.printer_columns]

    def row(obj: Obj, now: datetime.datetime) -> list[Any]:
        return [obj["metadata"]["name"], *(value_at(obj, path) for path in paths)]

    columns = tuple((name, kind, priority) for name, kind, _, priority in rt.printer_columns)
    return (_NAME, *columns), row


def _column(name: str, kind: str, priority: int) -> Obj:
    return {
        "name": name,
        "type": kind,
        "format": "name" if name == "Name" else "",
        "description": "",
        "priority": priority,
    }


View = Callable[[Obj], Obj]


def _row_object(obj: Obj, request: TableRequest, view: View | None) -> Obj | None:
    if request.include_object == "None":
        return None
    shown = view(obj) if view else obj
    if request.include_object == "Object":
        return shown
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": f"{TABLE_GROUP}/{request.version}",
        "metadata": shown["metadata"],
    }


def to_table(
    rt: ResourceType,
    objects: list[Obj],
    list_meta: Obj,
    request: TableRequest,
    view: View | None = None,
) -> Obj:
    """The Table of ``objects`` in their stored form (events print as core events whatever
    the group asked); ``view`` turns an object into what the row carries as its object.

    ``list_meta`` is the list's metadata (resourceVersion, continue) or, for one object, a
    metadata holding its resourceVersion."""
    columns, printer = (
        _custom_printer(rt) if rt.schema is not None else PRINTERS.get(rt.key, _DEFAULT)
    )
    now = datetime.datetime.now(datetime.UTC)
    rows = []
    for obj in objects:
        row: Obj = {"cells": printer(obj, now)}
        row["object"] = _row_object(obj, request, view)
        phase = (obj.get("status") or {}).get("phase") if rt.key == "pods" else None
        if phase in ("Succeeded", "Failed"):
            row["conditions"] = [
                {
                    "type": "Completed",
                    "status": "True",
                    "reason": phase,
                    "message": "The pod has completed successfully."
                    if phase == "Succeeded"
                    else "The pod failed.",
                }
            ]
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": f"{TABLE_GROUP}/{request.version}",
        "metadata": list_meta,
        "columnDefinitions": [_column(*column) for column in columns],
        "rows": rows,
    }


@functools.cache
def watch_view(rt: ResourceType, request: TableRequest, view: View | None) -> View:
    """A watch's view printing each event's object as a one-row Table. Cached, so one
    function per kind of request: watch lines are encoded once per view and shared."""

    def as_table(obj: Obj) -> Obj:
        meta = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
        return to_table(rt, [obj], meta, request, view)

    return as_table
