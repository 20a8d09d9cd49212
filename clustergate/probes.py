"""Running a probe pod and reading its one-line JSON result.

A probe pod runs ``python -m clustergate.probe KIND ...`` from the configured probe image, once
(restartPolicy Never), labelled with the run id. The result is the line of its log that carries
the probe's result key. The pod is deleted afterwards whatever happened; the run namespace and
the sweep catch what an interrupted run leaves.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from clustergate.admission import refusal
from clustergate.diagnostics import RESULT_KEY, pod_snapshot
from clustergate.runctx import RunContext
from clustergate.wait import wait_for_objects

_FINISHED = ("Succeeded", "Failed")
#: Reading a failed probe pod once more before deleting it may take this long.
SNAPSHOT_TIMEOUT_S = 5.0


class ProbeError(AssertionError):
    """The probe pod did not produce a result; says what the pod showed instead."""


@dataclass(frozen=True)
class ProbeResult:
    pod: str
    node: str
    data: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


@dataclass(frozen=True)
class ProbeSpec:
    kind: str
    args: tuple[str, ...] = ()
    namespace: str | None = None
    service_account: str | None = None
    node: str | None = None
    host_network: bool = False
    annotations: tuple[tuple[str, str], ...] = ()


def probe_pod(ctx: RunContext, image: str, spec: ProbeSpec, name: str) -> client.V1Pod:
    metadata = ctx.metadata(name, **{"clustergate.io/probe": spec.kind})
    metadata.namespace = spec.namespace or ctx.namespace
    metadata.annotations = {**(metadata.annotations or {}), **dict(spec.annotations)}
    return client.V1Pod(
        metadata=metadata,
        spec=client.V1PodSpec(
            restart_policy="Never",
            service_account_name=spec.service_account,
            host_network=spec.host_network or None,
            dns_policy="ClusterFirstWithHostNet" if spec.host_network else None,
            node_selector={"kubernetes.io/hostname": spec.node} if spec.node else None,
            tolerations=[client.V1Toleration(operator="Exists")] if spec.node else None,
            active_deadline_seconds=600,
            containers=[
                client.V1Container(
                    name="probe",
                    image=image,
                    command=["python", "-m", "clustergate.probe", spec.kind, *spec.args],
                    resources=client.V1ResourceRequirements(
                        requests={"cpu": "10m", "memory": "32Mi"},
                        limits={"memory": "128Mi"},
                    ),
                )
            ],
        ),
    )


def run_probe(ctx: RunContext, image: str, spec: ProbeSpec, timeout_s: float) -> ProbeResult:
    """Create the probe pod, wait for it to finish, return its result; always delete it."""
    core = ctx.cluster.core()
    name = f"probe-{spec.kind}-{secrets.token_hex(3)}"
    pod = probe_pod(ctx, image, spec, name)
    namespace = pod.metadata.namespace
    try:
        core.create_namespaced_pod(namespace, pod)
    except ApiException as error:
        refused = refusal(error)
        if refused is None:
            raise
        what = f"probe pod {namespace}/{name} ({spec.kind})"
        raise ProbeError(refused.sentence(what)) from error
    ctx.name("Pod", name, namespace)
    finished, log = None, None
    try:
        seen = wait_for_objects(
            core.list_namespaced_pod,
            lambda pods: not pods or pods[0].status.phase in _FINISHED,
            what=f"probe pod {namespace}/{name} ({spec.kind}) to finish",
            timeout_s=timeout_s,
            describe=_describe_pods,
            namespace=namespace,
            field_selector=f"metadata.name={name}",
        )
        if not seen:
            raise ProbeError(
                f"probe pod {namespace}/{name} ({spec.kind}) disappeared before it finished: "
                "deleted by someone else, or its node was removed (check the node events)"
            )
        finished = seen[0]
        log = core.read_namespaced_pod_log(name, namespace, container="probe")
        return ProbeResult(name, finished.spec.node_name or "", _parse(log, namespace, name))
    finally:
        _keep_snapshot(ctx, name, namespace, finished, log)
        try:
            core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        except ApiException as error:
            if error.status != 404:
                raise


def _keep_snapshot(
    ctx: RunContext, name: str, namespace: str, pod: client.V1Pod | None, log: str | None
) -> None:
    """Name the probe pod and its node with what was seen of it, for the check's diagnostics:
    the pod is deleted next. After a failure the pod and its log are read once more."""
    core = ctx.cluster.core()
    try:
        if pod is None:
            pod = core.read_namespaced_pod(name, namespace, _request_timeout=SNAPSHOT_TIMEOUT_S)
        if log is None:
            log = core.read_namespaced_pod_log(
                name,
                namespace,
                container="probe",
                tail_lines=40,
                _request_timeout=SNAPSHOT_TIMEOUT_S,
            )
    except Exception as error:  # a snapshot is a diagnostic: it never hides the real failure
        log = log or f"(not read: {type(error).__name__}: {str(error)[:200]})"
    if pod is None:
        return
    ctx.name("Pod", name, namespace, snapshot=pod_snapshot(ctx.cluster, pod, log))
    if pod.spec.node_name:
        ctx.name("Node", pod.spec.node_name)


def _parse(log: str, namespace: str, name: str) -> dict[str, Any]:
    for line in reversed(log.splitlines()):
        if RESULT_KEY in line:
            try:
                return json.loads(line)
            except ValueError:
                break
    tail = "\n".join(log.splitlines()[-10:])
    raise ProbeError(f"probe pod {namespace}/{name} printed no result line; log tail:\n{tail}")


def _describe_pods(pods: list[Any]) -> str:
    if not pods:
        return "pod not found"
    pod = pods[0]
    status = pod.status
    waiting = [
        f"{item.name}: {item.state.waiting.reason}"
        for item in status.container_statuses or []
        if item.state and item.state.waiting
    ]
    conditions = [
        f"{item.type}={item.status}" + (f" ({item.message})" if item.message else "")
        for item in status.conditions or []
        if item.status != "True"
    ]
    where = pod.spec.node_name or "unscheduled"
    return "; ".join([f"phase {status.phase} on {where}", *waiting, *conditions])
