"""Draining a node the way ``kubectl drain`` does (k8s.io/kubectl/pkg/drain).

1. The node must be cordoned first (:func:`clustergate.nodes.cordoned`, which also puts it back).
2. Its pods are listed by ``spec.nodeName`` and filtered as kubectl filters them: mirror pods
   are skipped; DaemonSet pods are skipped with ``ignore_daemonsets`` and refused without it;
   pods with emptyDir need ``delete_emptydir_data``; pods without a controller need ``force``;
   finished pods are always deletable.
3. Every remaining pod is evicted in parallel through the policy/v1 Eviction subresource. A
   429 (the PodDisruptionBudget allows no disruption now) is retried after ``retry_interval_s``
   (kubectl: 5 s); 404 means the pod is gone; anything else fails the drain.
4. After its eviction is accepted each pod is awaited until it is gone or replaced (its uid
   changed), polling each second as kubectl does.
5. One global deadline covers all of it; when it passes, the failure names the pods still on
   the node and, for each, the budget that refused it and what the budget said.

Every refusal is recorded with its time, pod, budget and message: a drain check uses them as
the proof that budgets are enforced.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from clustergate.kube import Cluster
from clustergate.nodes import cordoned_now

log = logging.getLogger("clustergate.drain")

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
KUBECTL_RETRY_INTERVAL_S = 5.0
_DELETE_POLL_S = 1.0
_MAX_PARALLEL = 32
_BUDGET_NAME = re.compile(r"The disruption budget (\S+) ")


class DrainError(AssertionError):
    """The drain could not complete; the message says which pods and why."""


class DrainTimeout(DrainError):
    """The global deadline passed with pods still on the node; ``refusals`` are the 429s seen."""

    def __init__(self, message: str, refusals: list[Refusal] | None = None) -> None:
        super().__init__(message)
        self.refusals = list(refusals or [])


@dataclass(frozen=True)
class DrainOptions:
    timeout_s: float
    ignore_daemonsets: bool = True
    delete_emptydir_data: bool = False
    force: bool = False
    grace_period_s: int | None = None
    retry_interval_s: float = KUBECTL_RETRY_INTERVAL_S


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str
    uid: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class DrainPlan:
    """kubectl's filters applied: what to evict, what to skip and what blocks the drain."""

    evict: tuple[Any, ...]
    skipped: tuple[tuple[Any, str], ...]
    refused: tuple[tuple[Any, str], ...]


def _controller(pod: Any) -> Any | None:
    return next((ref for ref in pod.metadata.owner_references or [] if ref.controller), None)


def _finished(pod: Any) -> bool:
    return (pod.status.phase if pod.status else None) in ("Succeeded", "Failed")


def plan_drain(pods: Iterable[Any], options: DrainOptions) -> DrainPlan:
    """Apply kubectl drain's pod filters (daemonSet, mirror, localStorage, unreplicated)."""
    evict, skipped, refused = [], [], []
    for pod in pods:
        if pod.metadata.deletion_timestamp is not None:
            # Already leaving: its eviction is a plain delete without a budget check (FACTS.md),
            # so it needs no controller; the drain only waits for it to go.
            evict.append(pod)
            continue
        controller = _controller(pod)
        finished = _finished(pod)
        if controller is not None and controller.kind == "DaemonSet" and not finished:
            if options.ignore_daemonsets:
                skipped.append((pod, "DaemonSet-managed"))
            else:
                refused.append((pod, "DaemonSet-managed (use ignore_daemonsets)"))
            continue
        if MIRROR_ANNOTATION in (pod.metadata.annotations or {}):
            skipped.append((pod, "mirror pod"))
            continue
        volumes = (pod.spec.volumes if pod.spec else None) or []
        local_storage = any(volume.empty_dir is not None for volume in volumes)
        if local_storage and not finished and not options.delete_emptydir_data:
            refused.append((pod, "has local storage, emptyDir (use delete_emptydir_data)"))
            continue
        if not finished and controller is None and not options.force:
            refused.append((pod, "declares no controller (use force)"))
            continue
        evict.append(pod)
    return DrainPlan(tuple(evict), tuple(skipped), tuple(refused))


@dataclass(frozen=True)
class Refusal:
    """One eviction refused with 429; ``at`` is time.monotonic()."""

    at: float
    pod: str
    budget: str
    message: str


def parse_refusal(body: str | None) -> tuple[str, str]:
    """The budget name and its message from a 429 eviction answer (Status JSON)."""
    try:
        status = json.loads(body or "{}")
    except ValueError:
        return "", body or ""
    causes = (status.get("details") or {}).get("causes") or []
    for cause in causes:
        text = str(cause.get("message") or "")
        match = _BUDGET_NAME.search(text)
        if cause.get("reason") == "DisruptionBudget" or match:
            return (match.group(1) if match else ""), text
    return "", str(status.get("message") or "")


def _api_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "{}").get("message") or error.reason)
    except ValueError:
        return str(error.reason)


@dataclass
class EvictedPod:
    pod: PodRef
    accepted_at: float
    gone_at: float
    refusals: int


@dataclass
class DrainResult:
    node: str
    started: float
    finished: float
    evicted: list[EvictedPod]
    skipped: list[tuple[str, str]]
    refusals: list[Refusal] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.finished - self.started


class _Drain:
    def __init__(self, cluster: Cluster, node: str, options: DrainOptions) -> None:
        self.core = cluster.core()
        self.node = node
        self.options = options
        self.started = time.monotonic()
        self.deadline = self.started + options.timeout_s
        self.refusals: list[Refusal] = []
        self.pending: dict[str, str] = {}
        self._lock = threading.Lock()

    def _refused(self, ref: PodRef, error: ApiException) -> None:
        budget, message = parse_refusal(error.body)
        with self._lock:
            self.refusals.append(Refusal(time.monotonic(), str(ref), budget, message))
            where = f"PodDisruptionBudget {ref.namespace}/{budget}" if budget else "the API server"
            self.pending[str(ref)] = f"eviction refused (429) by {where}: {message}"

    def _evict(self, ref: PodRef) -> None:
        body = client.V1Eviction(
            metadata=client.V1ObjectMeta(name=ref.name, namespace=ref.namespace),
            delete_options=client.V1DeleteOptions(grace_period_seconds=self.options.grace_period_s),
        )
        self.core.create_namespaced_pod_eviction(
            ref.name, ref.namespace, body, _preload_content=False, _request_timeout=30
        )

    def evict_and_wait(self, ref: PodRef) -> EvictedPod:
        refusals = 0
        with self._lock:
            self.pending[str(ref)] = "eviction not yet accepted"
        while True:
            if time.monotonic() >= self.deadline:
                raise DrainTimeout(str(ref))
            try:
                self._evict(ref)
                break
            except ApiException as error:
                if error.status == 404:
                    break
                if error.status != 429:
                    raise DrainError(
                        f"eviction of pod {ref} failed with {error.status}: {_api_message(error)}"
                    ) from None
                refusals += 1
                self._refused(ref, error)
                time.sleep(
                    max(0.0, min(self.options.retry_interval_s, self.deadline - time.monotonic()))
                )
        accepted = time.monotonic()
        with self._lock:
            self.pending[str(ref)] = "evicted, still terminating (waiting until it is gone)"
        while True:
            if self._gone(ref):
                with self._lock:
                    self.pending.pop(str(ref), None)
                return EvictedPod(ref, accepted, time.monotonic(), refusals)
            if time.monotonic() >= self.deadline:
                raise DrainTimeout(str(ref))
            time.sleep(max(0.0, min(_DELETE_POLL_S, self.deadline - time.monotonic())))

    def _gone(self, ref: PodRef) -> bool:
        try:
            pod = self.core.read_namespaced_pod(ref.name, ref.namespace, _request_timeout=30)
        except ApiException as error:
            if error.status == 404:
                return True
            raise
        return bool(pod.metadata.uid != ref.uid)

    def timeout_message(self) -> str:
        with self._lock:
            pending = dict(self.pending)
        lines = [f"{pod}: {state}" for pod, state in sorted(pending.items())]
        return (
            f"drain of node {self.node} did not complete within {self.options.timeout_s:.0f}s; "
            f"{len(pending)} pod(s) still on it: " + "; ".join(lines)
        )


def drain_node(cluster: Cluster, node: str, options: DrainOptions) -> DrainResult:
    """Evict every pod of the cordoned ``node`` as kubectl drain does; see the module doc."""
    if options.timeout_s <= 0:
        raise ValueError("a drain needs a deadline (timeout_s > 0)")
    core = cluster.core()
    if not cordoned_now(core.read_node(node)):
        raise DrainError(f"node {node} is not cordoned; cordon it first (nodes.cordoned)")
    drain = _Drain(cluster, node, options)
    pods = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
    plan = plan_drain(pods, options)
    if plan.refused:
        raise DrainError(
            f"cannot drain node {node}: "
            + "; ".join(
                f"{pod.metadata.namespace}/{pod.metadata.name} {why}" for pod, why in plan.refused
            )
        )
    refs = [PodRef(p.metadata.namespace, p.metadata.name, p.metadata.uid) for p in plan.evict]
    log.info("draining %s: evicting %d pod(s), skipping %d", node, len(refs), len(plan.skipped))
    evicted, failures, timed_out = [], [], False
    if refs:
        with ThreadPoolExecutor(max_workers=min(_MAX_PARALLEL, len(refs))) as pool:
            futures = [pool.submit(drain.evict_and_wait, ref) for ref in refs]
            for future in futures:
                try:
                    evicted.append(future.result())
                except DrainTimeout:
                    timed_out = True
                except DrainError as error:
                    failures.append(str(error))
    if failures:
        raise DrainError(f"drain of node {node} failed: " + "; ".join(failures))
    if timed_out:
        raise DrainTimeout(drain.timeout_message(), drain.refusals)
    skipped = [(f"{pod.metadata.namespace}/{pod.metadata.name}", why) for pod, why in plan.skipped]
    return DrainResult(node, drain.started, time.monotonic(), evicted, skipped, drain.refusals)
