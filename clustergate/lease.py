"""One disruptive run per cluster at a time, enforced by a Lease in the cluster.

A disruptive check holds ``kube-system/clustergate-disruption`` for its duration. A lease held
by another run that is still being renewed means someone else is draining or upgrading this
cluster now: the check fails at once saying who. An expired lease (a killed run) is taken over.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from clustergate.kube import Cluster
from clustergate.runctx import CREATED_AT, run_labels

LEASE_NAMESPACE = "kube-system"
LEASE_NAME = "clustergate-disruption"


class ClusterBusy(AssertionError):
    """Another run holds the disruption lease."""


def _now() -> datetime:
    return datetime.now(UTC)


def _expired(lease: client.V1Lease) -> bool:
    spec = lease.spec
    if not spec.holder_identity or spec.renew_time is None:
        return True
    return spec.renew_time + timedelta(seconds=spec.lease_duration_seconds or 0) < _now()


def _acquire(cluster: Cluster, holder: str, duration_s: int) -> None:
    api = cluster.coordination()
    spec = client.V1LeaseSpec(
        holder_identity=holder,
        lease_duration_seconds=duration_s,
        acquire_time=_now(),
        renew_time=_now(),
    )
    try:
        current = api.read_namespaced_lease(LEASE_NAME, LEASE_NAMESPACE)
    except ApiException as error:
        if error.status != 404:
            raise
        metadata = client.V1ObjectMeta(
            name=LEASE_NAME, labels=run_labels(holder), annotations={CREATED_AT: _now().isoformat()}
        )
        api.create_namespaced_lease(LEASE_NAMESPACE, client.V1Lease(metadata=metadata, spec=spec))
        return
    if current.spec.holder_identity not in (None, holder) and not _expired(current):
        raise ClusterBusy(
            f"run {current.spec.holder_identity} holds lease {LEASE_NAMESPACE}/{LEASE_NAME} "
            f"(renewed {current.spec.renew_time:%H:%M:%S} UTC): another clustergate run is "
            "disrupting this cluster; disruptive checks wait for no one, try again later"
        )
    current.spec = spec
    current.metadata.labels = {**(current.metadata.labels or {}), **run_labels(holder)}
    api.replace_namespaced_lease(LEASE_NAME, LEASE_NAMESPACE, current)


def _release(cluster: Cluster, holder: str) -> None:
    api = cluster.coordination()
    try:
        current = api.read_namespaced_lease(LEASE_NAME, LEASE_NAMESPACE)
        if current.spec.holder_identity == holder:
            api.delete_namespaced_lease(LEASE_NAME, LEASE_NAMESPACE)
    except ApiException as error:
        if error.status != 404:
            raise


@contextmanager
def disruption_lease(cluster: Cluster, holder: str, duration_s: int = 60) -> Iterator[None]:
    """Hold the lease while the block runs, renewing it every third of its duration."""
    _acquire(cluster, holder, duration_s)
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(duration_s / 3):
            try:
                _acquire(cluster, holder, duration_s)
            except (ApiException, ClusterBusy):
                continue

    renewer = threading.Thread(target=renew, name="clustergate-lease", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join(timeout=duration_s)
        _release(cluster, holder)
