"""What dead runs left in the cluster, and the sweep that removes all of it at once.

A run is dead when its heartbeat has expired (``clustergate.heartbeat``); a namespace kept by
``--keep-on-failure`` is a finished run's leftover whatever its heartbeat. What a dead run left
is removed whatever its age, and nothing of a live run is touched, however old.

The sweep puts back before it deletes: first the weight a cutover and the ASG sizes a scaling
check recorded, and the cordons a drain placed (a wrong weight or a cordoned node hurts
traffic; a stray namespace does not), then namespaces, leases (a dead run's heartbeat, the
disruption Lease if a dead run holds it) and labelled pods in shared namespaces. A namespace
whose record cannot be put back is kept, with its record, for a later sweep.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from clustergate.heartbeat import HEARTBEAT_PREFIX, Runs, heartbeat_expiry
from clustergate.kube import Cluster, list_all
from clustergate.nodes import uncordon_for
from clustergate.runctx import (
    CORDONED_AT,
    CORDONED_BY,
    KEPT_AT,
    KEPT_LABEL,
    RESTORE_LABEL,
    RUN_ID,
    delete_namespace,
    selector,
)

log = logging.getLogger("clustergate.leftovers")

#: Called by :func:`sweep` with a restore record's data; returns what it put back.
Restorer = Callable[[dict[str, str]], str]
SWEEP_COMMAND = "pytest --sweep"


@dataclass(frozen=True)
class Leftover:
    """One thing a dead run left: ``kind`` is a Kubernetes kind, or ``Cordon`` for a node."""

    kind: str
    name: str
    namespace: str | None
    run_id: str | None
    since: datetime | None
    why: str

    @property
    def where(self) -> str:
        kind = "node" if self.kind == "Cordon" else self.kind.lower()
        path = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{kind}/{path}" + (" (cordoned)" if self.kind == "Cordon" else "")

    def describe(self) -> str:
        since = f"since {self.since:%Y-%m-%d %H:%M:%S} UTC" if self.since else "since unknown"
        return f"{self.where}: run {self.run_id or '?'}, {since}, {self.why}"


def _run_of(obj: Any) -> str | None:
    return (obj.metadata.labels or {}).get(RUN_ID)


def _parse(stamp: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(stamp) if stamp else None
    except ValueError:
        return None


def _dead_namespaces(cluster: Cluster, runs: Runs) -> list[Leftover]:
    found = []
    for namespace in cluster.core().list_namespace(label_selector=selector()).items:
        meta = namespace.metadata
        if meta.deletion_timestamp is not None:
            continue
        run_id = _run_of(namespace)
        since = meta.creation_timestamp
        if (meta.labels or {}).get(KEPT_LABEL) == "true" and run_id != runs.own:
            since = _parse((meta.annotations or {}).get(KEPT_AT)) or since
            why = "kept by --keep-on-failure"
        elif not runs.alive(run_id, since):
            why = runs.why_dead(run_id)
        else:
            continue
        found.append(Leftover("Namespace", meta.name, None, run_id, since, why))
    return found


def _restore_records(cluster: Cluster, namespaces: list[Leftover]) -> list[Leftover]:
    found = []
    for namespace in namespaces:
        listed = cluster.core().list_namespaced_config_map(
            namespace.name, label_selector=RESTORE_LABEL
        )
        for record in listed.items:
            what = record.metadata.labels[RESTORE_LABEL]
            data = record.data or {}
            detail = data.get("description", what)
            if "weight" in data:  # a cutover's record: the description names the driver
                detail += f" back to {data['weight']}%"
            found.append(
                Leftover(
                    "ConfigMap",
                    record.metadata.name,
                    namespace.name,
                    namespace.run_id,
                    record.metadata.creation_timestamp,
                    f"records {what} to put back: {detail}",
                )
            )
    return found


def _dead_cordons(cluster: Cluster, runs: Runs) -> list[Leftover]:
    found = []
    for node in list_all(cluster.core().list_node):
        annotations = node.metadata.annotations or {}
        owner = annotations.get(CORDONED_BY)
        if owner is None:
            continue
        since = _parse(annotations.get(CORDONED_AT))
        if runs.alive(owner, since):
            continue
        found.append(
            Leftover("Cordon", node.metadata.name, None, owner, since, runs.why_dead(owner))
        )
    return found


def _dead_leases(cluster: Cluster, runs: Runs) -> list[Leftover]:
    """Labelled leases of dead runs: their heartbeats, the disruption Lease a dead run holds."""
    found = []
    leases = cluster.coordination().list_lease_for_all_namespaces(label_selector=selector())
    for lease in leases.items:
        meta = lease.metadata
        heartbeat = meta.name.startswith(HEARTBEAT_PREFIX)
        holder = (lease.spec.holder_identity if lease.spec else None) or _run_of(lease)
        if runs.alive(holder, meta.creation_timestamp):
            continue
        expired = heartbeat_expiry(lease)
        if not heartbeat:
            why = f"held by run {holder}: {runs.why_dead(holder)}"
        elif expired is not None:
            why = f"heartbeat expired {expired:%Y-%m-%d %H:%M:%S} UTC"
        else:
            why = "heartbeat never renewed"
        found.append(
            Leftover("Lease", meta.name, meta.namespace, holder, meta.creation_timestamp, why)
        )
    return found


def _dead_pods(cluster: Cluster, runs: Runs, namespaces: set[str]) -> list[Leftover]:
    """Labelled pods of dead runs outside their own namespaces (which go as a whole)."""
    found = []
    for pod in cluster.core().list_pod_for_all_namespaces(label_selector=selector()).items:
        meta = pod.metadata
        if meta.namespace in namespaces or meta.deletion_timestamp is not None:
            continue
        run_id = _run_of(pod)
        if runs.alive(run_id, meta.creation_timestamp):
            continue
        found.append(
            Leftover(
                "Pod",
                meta.name,
                meta.namespace,
                run_id,
                meta.creation_timestamp,
                runs.why_dead(run_id),
            )
        )
    return found


def find(cluster: Cluster, runs: Runs) -> list[Leftover]:
    """Everything dead runs left, put-backs (records, cordons) first."""
    namespaces = _dead_namespaces(cluster, runs)
    listed = cluster.core().list_namespace(label_selector=selector()).items
    run_namespaces = {namespace.metadata.name for namespace in listed}
    return [
        *_restore_records(cluster, namespaces),
        *_dead_cordons(cluster, runs),
        *namespaces,
        *_dead_leases(cluster, runs),
        *_dead_pods(cluster, runs, run_namespaces),
    ]


def describe(found: list[Leftover], access: str = "") -> str:
    """The leftovers check's message: every leftover, and the command that removes them."""
    command = f"{SWEEP_COMMAND} {access}".strip()
    lines = [
        f"{len(found)} object(s) left by runs that are no longer alive (a cluster with a "
        "dead run's cordons, weights or workloads is not the cluster to judge):",
        *(f"  {leftover.describe()}" for leftover in found),
        f"Remove them all now with: {command}",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class SweepReport:
    namespaces: tuple[str, ...]
    uncordoned: tuple[str, ...]
    objects: tuple[str, ...]
    restored: tuple[str, ...] = ()
    #: Namespaces kept because what they record could not be put back (and why).
    kept: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [
            f"{len(self.restored)} setting(s) put back: {', '.join(self.restored) or '-'}",
            f"{len(self.uncordoned)} node(s) uncordoned: {', '.join(self.uncordoned) or '-'}",
            f"{len(self.namespaces)} namespace(s) deleted: {', '.join(self.namespaces) or '-'}",
            f"{len(self.objects)} other object(s) deleted: {', '.join(self.objects) or '-'}",
        ]
        if self.kept:
            parts.append(f"{len(self.kept)} namespace(s) KEPT: {'; '.join(self.kept)}")
        return "; ".join(parts)


def sweep(cluster: Cluster, runs: Runs, restore: dict[str, Restorer] | None = None) -> SweepReport:
    """Remove everything :func:`find` finds: put-backs first, then deletions."""
    found = find(cluster, runs)
    core, coordination = cluster.core(), cluster.coordination()
    restored, problems = _put_back_records(
        cluster, [item for item in found if item.kind == "ConfigMap"], restore or {}
    )
    uncordoned = []
    for item in found:
        if item.kind == "Cordon" and uncordon_for(cluster, item.name, str(item.run_id)):
            uncordoned.append(item.name)
    namespaces, kept, objects = [], [], []
    for item in found:
        if item.kind == "Namespace":
            if item.name in problems:
                kept.append(f"{item.name} ({'; '.join(problems[item.name])})")
                continue
            delete_namespace(cluster, item.name)
            namespaces.append(item.name)
        elif item.kind == "Lease":
            _gone(coordination.delete_namespaced_lease, item.name, item.namespace)
            objects.append(f"lease/{item.namespace}/{item.name}")
        elif item.kind == "Pod":
            _gone(core.delete_namespaced_pod, item.name, item.namespace)
            objects.append(f"pod/{item.namespace}/{item.name}")
    return SweepReport(
        tuple(namespaces), tuple(uncordoned), tuple(objects), tuple(restored), tuple(kept)
    )


def _put_back_records(
    cluster: Cluster, records: list[Leftover], restore: dict[str, Restorer]
) -> tuple[list[str], dict[str, list[str]]]:
    """Put back what each record says; deletes each one put back. Problems per namespace."""
    core = cluster.core()
    done: list[str] = []
    problems: dict[str, list[str]] = {}
    for item in records:
        namespace = str(item.namespace)
        record = core.read_namespaced_config_map(item.name, namespace)
        kind = record.metadata.labels[RESTORE_LABEL]
        restorer = restore.get(kind)
        where = f"configmap/{namespace}/{item.name}"
        if restorer is None:
            problems.setdefault(namespace, []).append(
                f"{where} records {kind} to put back and no restorer was given"
            )
            continue
        try:
            done.append(restorer(record.data or {}))
        except Exception as error:  # a failed restore keeps its record for the next sweep
            problems.setdefault(namespace, []).append(
                f"{where}: could not put back {kind}: {error}"
            )
            log.error("could not put back %s recorded in %s: %s", kind, where, error)
            continue
        core.delete_namespaced_config_map(item.name, namespace)
    return done, problems


def _gone(delete: Callable[..., object], name: str, namespace: str | None) -> None:
    try:
        delete(name, namespace)
    except ApiException as error:
        if error.status != 404:
            raise
