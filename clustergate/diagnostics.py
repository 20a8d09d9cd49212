"""What the cluster looked like when a check failed, collected once by the framework.

As the Kubernetes e2e framework's ``DumpAllNamespaceInfo``, Sonobuoy and kuttl do, a failed
check gets, before anything of it is torn down:

- the events of the run namespace and of every object the check named (``RunContext.name``:
  the library names the pods it probes, the nodes it cordons, the workloads it creates);
- the state of the namespace's pods and of the named pods elsewhere: phase, conditions,
  container statuses with restart counts and last termination, node; for pods already gone
  (probe pods are deleted as soon as they report) what was seen of them before they went;
- the tail of probe pods' logs;
- the conditions, taints and cordon of the nodes those pods ran on and of the named nodes;
- for an AWS failure anywhere in the exception chain: the operation, error code, message,
  HTTP status and request id (botocore's ``ClientError`` carries them).

Collection is bounded (:class:`Limits`: a deadline for all of it, a timeout per request, caps
on counts and on the size of the result) and never raises: what could not be collected is said
in ``problems``. Everything is redacted (clustergate/redact.py) before it leaves here.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clustergate.kube import Cluster
from clustergate.redact import Redactor, known_secrets
from clustergate.runctx import Named

log = logging.getLogger("clustergate.diagnostics")

#: Label of probe pods (clustergate/probes.py): their logs are collected.
PROBE_LABEL = "clustergate.io/probe"
#: The key that marks a probe's result line in its log (clustergate/probes.py reads it too).
RESULT_KEY = "clustergate_probe"


@dataclass(frozen=True)
class Limits:
    """Bounds of one check's diagnostics."""

    total_s: float = 20.0
    request_s: float = 5.0
    events: int = 100
    pods: int = 30
    nodes: int = 20
    log_lines: int = 40
    log_bytes: int = 6000
    #: The JSON of one check's diagnostics stays under this; logs and events are cut first.
    max_bytes: int = 200_000


DEFAULT_LIMITS = Limits()


class _Budget:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.total_s
        self.problems: list[str] = []

    def timeout(self) -> float | None:
        left = self.deadline - time.monotonic()
        return min(self.limits.request_s, left) if left > 0.2 else None

    def ask(self, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``call`` with the request timeout left, or None (and a problem said) on failure."""
        timeout = self.timeout()
        if timeout is None:
            self.problems.append(f"{what}: not collected, the {self.limits.total_s:.0f}s ran out")
            return None
        try:
            return call(*args, _request_timeout=timeout, **kwargs)
        except Exception as error:  # diagnostics never turn a failure into an error
            self.problems.append(f"{what}: {type(error).__name__}: {str(error)[:300]}")
            return None


def collect(
    cluster: Cluster,
    namespace: str,
    named: Sequence[Named] = (),
    error: BaseException | None = None,
    limits: Limits = DEFAULT_LIMITS,
    redactor: Redactor | None = None,
) -> dict[str, Any]:
    """The diagnostics of a failed check that ran in ``namespace`` and named ``named``."""
    budget = _Budget(limits)
    started = time.monotonic()
    result: dict[str, Any] = {
        "collected_at": datetime.now(UTC).isoformat(),
        "namespace": namespace,
        "named": [_named(entry) for entry in named],
    }
    try:
        result["aws_errors"] = aws_errors(error)
        pods = _pods(cluster, namespace, named, budget)
        result["pods"] = pods
        result["aws_errors"] += [e for pod in pods for e in pod.pop("aws_errors", [])]
        result["events"] = _events(cluster, namespace, named, budget)
        result["nodes"] = _nodes(cluster, pods, named, budget)
    except Exception as failure:  # never raise from diagnostics
        budget.problems.append(f"collection stopped: {type(failure).__name__}: {failure}")
    result["problems"] = budget.problems
    result["collection_s"] = round(time.monotonic() - started, 3)
    redactor = redactor or Redactor(known_secrets(cluster.api.configuration))
    return fit(redactor.data(result), limits.max_bytes)


def _named(entry: Named) -> str:
    where = f"{entry.namespace}/" if entry.namespace else ""
    return f"{entry.kind.lower()}/{where}{entry.name}"


# --- pods -------------------------------------------------------------------------------------


def pod_state(pod: dict[str, Any]) -> dict[str, Any]:
    """A pod as ``kubectl describe`` summarises it, from its API (camelCase) form."""
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {}) or {}
    return {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "phase": status.get("phase"),
        "reason": status.get("reason"),
        "message": status.get("message"),
        "node": spec.get("nodeName"),
        "pod_ip": status.get("podIP"),
        "deleting": meta.get("deletionTimestamp") is not None,
        "conditions": [
            {key: item.get(key) for key in ("type", "status", "reason", "message")}
            for item in status.get("conditions") or []
        ],
        "containers": [
            _container(item)
            for item in [
                *(status.get("initContainerStatuses") or []),
                *(status.get("containerStatuses") or []),
            ]
        ],
    }


def _container(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": item.get("name"),
        "image": item.get("image"),
        "ready": item.get("ready"),
        "restart_count": item.get("restartCount", 0),
        "state": _container_state(item.get("state")),
        "last_termination": _container_state(item.get("lastState")),
    }


def _container_state(state: dict[str, Any] | None) -> dict[str, Any] | None:
    for kind, fields in (
        ("waiting", ("reason", "message")),
        ("running", ("startedAt",)),
        ("terminated", ("exitCode", "reason", "message", "startedAt", "finishedAt")),
    ):
        if (state or {}).get(kind):
            return {"state": kind, **{key: state[kind].get(key) for key in fields}}  # type: ignore[index]
    return None


def pod_snapshot(
    cluster: Cluster, pod: Any, log_text: str | None, limits: Limits = DEFAULT_LIMITS
) -> dict[str, Any]:
    """What to keep of a pod about to be deleted: its state and its log's tail."""
    state = pod_state(cluster.api.sanitize_for_serialization(pod))
    if log_text is not None:
        state["log_tail"] = tail(log_text, limits.log_lines, limits.log_bytes)
        where = f"{state['namespace']}/{state['name']}"
        state["aws_errors"] = probe_aws_errors(log_text, where)
    state["seen_at"] = datetime.now(UTC).isoformat()
    return state


def tail(text: str, lines: int, max_bytes: int) -> str:
    kept = "\n".join(text.splitlines()[-lines:])
    return kept[-max_bytes:]


def _pods(
    cluster: Cluster, namespace: str, named: Sequence[Named], budget: _Budget
) -> list[dict[str, Any]]:
    core, limits = cluster.core(), budget.limits
    found: dict[tuple[str, str], dict[str, Any]] = {}
    listed = budget.ask(
        f"pods of {namespace}", core.list_namespaced_pod, namespace, limit=limits.pods
    )
    live = [cluster.api.sanitize_for_serialization(pod) for pod in (listed.items if listed else [])]
    for entry in named:
        if entry.kind != "Pod" or len(found) + len(live) >= limits.pods:
            continue
        if entry.namespace == namespace and listed is not None:
            continue
        pod = (
            budget.ask(
                f"pod {entry.namespace}/{entry.name}",
                core.read_namespaced_pod,
                entry.name,
                entry.namespace,
            )
            if entry.snapshot is None
            else None
        )
        if pod is not None:
            live.append(cluster.api.sanitize_for_serialization(pod))
    for pod in live[: limits.pods]:
        state = pod_state(pod)
        if PROBE_LABEL in (pod.get("metadata", {}).get("labels") or {}):
            text = budget.ask(
                f"log of pod {state['namespace']}/{state['name']}",
                core.read_namespaced_pod_log,
                state["name"],
                state["namespace"],
                tail_lines=limits.log_lines,
                limit_bytes=limits.log_bytes,
            )
            if text is not None:
                state["log_tail"] = tail(str(text), limits.log_lines, limits.log_bytes)
                where = f"{state['namespace']}/{state['name']}"
                state["aws_errors"] = probe_aws_errors(str(text), where)
        found[(state["namespace"], state["name"])] = state
    for entry in named:
        key = (entry.namespace or "", entry.name)
        if entry.kind == "Pod" and entry.snapshot is not None and key not in found:
            found[key] = {**entry.snapshot, "gone": True}
    return list(found.values())[: limits.pods]


# --- events -----------------------------------------------------------------------------------


def _events(
    cluster: Cluster, namespace: str, named: Sequence[Named], budget: _Budget
) -> list[dict[str, Any]]:
    core, limits = cluster.core(), budget.limits
    events: dict[str, dict[str, Any]] = {}

    def add(listed: Any) -> None:
        for event in listed.items if listed else []:
            events[event.metadata.uid or event.metadata.name] = _event(event)

    add(budget.ask(f"events of {namespace}", core.list_namespaced_event, namespace))
    for entry in named:
        if entry.namespace == namespace:
            continue
        selector = f"involvedObject.kind={entry.kind},involvedObject.name={entry.name}"
        if entry.namespace:
            add(
                budget.ask(
                    f"events of {_named(entry)}",
                    core.list_namespaced_event,
                    entry.namespace,
                    field_selector=selector,
                )
            )
        else:
            add(
                budget.ask(
                    f"events of {_named(entry)}",
                    core.list_event_for_all_namespaces,
                    field_selector=selector,
                )
            )
    ordered = sorted(events.values(), key=lambda event: event["last"] or "")
    return ordered[-limits.events :]


def _event(event: Any) -> dict[str, Any]:
    involved = event.involved_object
    where = f"{involved.namespace}/" if involved.namespace else ""
    last = event.last_timestamp or event.event_time or event.first_timestamp
    return {
        "type": event.type,
        "reason": event.reason,
        "object": f"{(involved.kind or '').lower()}/{where}{involved.name}",
        "message": event.message,
        "count": event.count or 1,
        "first": _iso(event.first_timestamp),
        "last": _iso(last),
        "source": (event.source.component if event.source else None) or event.reporting_component,
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else (str(value) if value else None)


# --- nodes ------------------------------------------------------------------------------------


def _nodes(
    cluster: Cluster, pods: Iterable[dict[str, Any]], named: Sequence[Named], budget: _Budget
) -> list[dict[str, Any]]:
    wanted = {entry.name for entry in named if entry.kind == "Node"}
    wanted |= {pod["node"] for pod in pods if pod.get("node")}
    core = cluster.core()
    listed = budget.ask("nodes", core.list_node, limit=max(budget.limits.nodes * 5, 100))
    nodes = listed.items if listed else []
    chosen = [node for node in nodes if node.metadata.name in wanted] or nodes
    return [
        node_state(cluster.api.sanitize_for_serialization(node))
        for node in chosen[: budget.limits.nodes]
    ]


def node_state(node: dict[str, Any]) -> dict[str, Any]:
    meta, spec, status = node.get("metadata", {}), node.get("spec", {}), node.get("status", {})
    annotations = meta.get("annotations") or {}
    return {
        "name": meta.get("name"),
        "unschedulable": bool(spec.get("unschedulable")),
        "cordoned_by": annotations.get("clustergate.io/cordoned-by"),
        "taints": [
            f"{taint.get('key')}={taint.get('value') or ''}:{taint.get('effect')}"
            for taint in spec.get("taints") or []
        ],
        "conditions": [
            {key: item.get(key) for key in ("type", "status", "reason", "message")}
            for item in status.get("conditions") or []
        ],
        "kubelet": (status.get("nodeInfo") or {}).get("kubeletVersion"),
        "node_group": (meta.get("labels") or {}).get("eks.amazonaws.com/nodegroup"),
    }


# --- AWS --------------------------------------------------------------------------------------


def aws_errors(error: BaseException | None) -> list[dict[str, Any]]:
    """Every botocore ``ClientError`` in ``error``'s chain (cause and context)."""
    found, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        response = getattr(error, "response", None)
        if isinstance(response, dict) and "Error" in response:
            meta = response.get("ResponseMetadata") or {}
            found.append(
                {
                    "operation": getattr(error, "operation_name", None),
                    "code": response["Error"].get("Code"),
                    "message": response["Error"].get("Message"),
                    "http_status": meta.get("HTTPStatusCode"),
                    "request_id": meta.get("RequestId")
                    or (meta.get("HTTPHeaders") or {}).get("x-amzn-requestid"),
                }
            )
        error = error.__cause__ or error.__context__
    return found


def probe_aws_errors(log_text: str, pod: str) -> list[dict[str, Any]]:
    """AWS errors that a probe pod reported in its result line (clustergate/probe): each
    answer with an operation (or call) and an error code, with the pod that got it."""
    found = []
    for line in log_text.splitlines():
        if RESULT_KEY not in line:
            continue
        try:
            result = json.loads(line)
        except ValueError:
            continue
        for answer in _dicts(result):
            operation = answer.get("operation") or answer.get("call")
            code = answer.get("error_code") or answer.get("code")
            if operation and code:
                found.append(
                    {
                        "operation": operation,
                        "code": code,
                        "message": answer.get("error_message"),
                        "http_status": answer.get("http_status"),
                        "request_id": answer.get("request_id"),
                        "pod": pod,
                    }
                )
    return found


def _dicts(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _dicts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _dicts(item)


# --- size -------------------------------------------------------------------------------------


def fit(diagnostics: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """Cut logs, then the oldest events, then pods, until the JSON is under ``max_bytes``."""

    def size() -> int:
        return len(json.dumps(diagnostics, default=str))

    if size() <= max_bytes:
        return diagnostics
    cut = []
    for pod in diagnostics.get("pods", []):
        if pod.get("log_tail"):
            pod["log_tail"] = tail(pod["log_tail"], 10, 1000)
    cut.append("log tails shortened to 10 lines")
    for key in ("events", "pods", "nodes"):
        while size() > max_bytes and len(diagnostics.get(key, [])) > 1:
            diagnostics[key] = diagnostics[key][len(diagnostics[key]) // 2 :]
            cut.append(f"{key} halved")
    diagnostics.setdefault("problems", []).append(
        f"cut to fit {max_bytes} bytes: {', '.join(dict.fromkeys(cut))}"
    )
    return diagnostics
