"""A run's heartbeat, and which runs are alive: liveness, not age, says what a sweep may remove.

Every run (the process that owns it: the xdist controller, or the only process without xdist)
holds a Lease of its own, ``clustergate-run-<run id>``, labelled with the run id, its
``holderIdentity`` the run id. A thread renews it every third of ``leaseDurationSeconds`` while
the run runs, and the run deletes it at its end. A run killed with SIGKILL stops renewing: once
``renewTime + leaseDurationSeconds`` lies in the past its heartbeat has expired and the run is
dead. A run with no heartbeat at all (it ended without cleaning up, or predates heartbeats) is
dead once its objects are older than a short grace, which covers the moment between a run's
first object and its first heartbeat.

Times are the API server's as far as a client can know them: the writer stamps ``renewTime``
on the server's clock (its own clock plus the offset read from the server's ``Date`` header),
and the reader compares against the server's ``Date``, so a runner whose clock is off does not
make live runs look dead or dead runs look alive.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from clustergate.kube import Cluster
from clustergate.runctx import CREATED_AT, RUN_ID, run_labels, selector

log = logging.getLogger("clustergate.heartbeat")

HEARTBEAT_PREFIX = "clustergate-run-"


def heartbeat_name(run_id: str) -> str:
    return f"{HEARTBEAT_PREFIX}{run_id}"


def server_now(cluster: Cluster) -> datetime:
    """The API server's time (its ``Date`` header, to the second); this machine's if absent."""
    _, _, headers = cluster.version().get_code_with_http_info(_request_timeout=15)
    date = (headers or {}).get("Date")
    if not date:
        return datetime.now(UTC)
    return parsedate_to_datetime(date).astimezone(UTC)


class Heartbeat:
    """The run's Lease, renewed by a daemon thread from :meth:`start` until :meth:`stop`."""

    def __init__(self, cluster: Cluster, run_id: str, namespace: str, duration_s: int) -> None:
        self.cluster, self.run_id, self.namespace = cluster, run_id, namespace
        self.name = heartbeat_name(run_id)
        self.duration_s = max(int(duration_s), 3)
        self._offset = timedelta(0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def _lease(self) -> client.V1Lease:
        now = self._now()
        return client.V1Lease(
            metadata=client.V1ObjectMeta(
                name=self.name,
                namespace=self.namespace,
                labels=run_labels(self.run_id),
                annotations={CREATED_AT: now.isoformat()},
            ),
            spec=client.V1LeaseSpec(
                holder_identity=self.run_id,
                lease_duration_seconds=self.duration_s,
                acquire_time=now,
                renew_time=now,
            ),
        )

    def start(self) -> None:
        self._offset = server_now(self.cluster) - datetime.now(UTC)
        self.cluster.coordination().create_namespaced_lease(self.namespace, self._lease())
        self._thread = threading.Thread(target=self._renew, name="clustergate-heartbeat")
        self._thread.daemon = True
        self._thread.start()

    def _renew(self) -> None:
        api = self.cluster.coordination()
        while not self._stop.wait(self.duration_s / 3):
            patch = {"spec": {"renewTime": self._now(), "holderIdentity": self.run_id}}
            try:
                try:
                    api.patch_namespaced_lease(self.name, self.namespace, patch)
                except ApiException as error:
                    if error.status != 404:
                        raise
                    log.warning(
                        "heartbeat %s/%s was deleted; recreating", self.namespace, self.name
                    )
                    api.create_namespaced_lease(self.namespace, self._lease())
            except Exception as error:  # a missed renewal is retried; the thread must go on
                log.warning("could not renew heartbeat %s: %s", self.name, error)

    def stop(self) -> None:
        """Stop renewing and delete the Lease: the run ended and says so."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.duration_s)
        try:
            self.cluster.coordination().delete_namespaced_lease(self.name, self.namespace)
        except ApiException as error:
            if error.status != 404:
                log.warning("could not delete heartbeat %s: %s", self.name, error.reason)


@dataclass(frozen=True)
class Runs:
    """Which runs are alive, as the cluster said at one moment (``now``, the server's time)."""

    now: datetime
    #: Run id -> when its heartbeat expires (or expired).
    heartbeats: dict[str, datetime]
    #: The run asking: always alive.
    own: str | None = None
    #: A run without a heartbeat is alive while its objects are younger than this.
    grace_s: float = 120.0

    def alive(self, run_id: str | None, created: datetime | None) -> bool:
        if run_id is not None and run_id == self.own:
            return True
        expires = self.heartbeats.get(run_id or "")
        if expires is not None:
            return expires >= self.now
        if created is None:
            return False
        return (self.now - created).total_seconds() < self.grace_s

    def why_dead(self, run_id: str | None) -> str:
        """Why a run counts as dead, for a leftover's line."""
        expires = self.heartbeats.get(run_id or "")
        if expires is not None:
            return f"heartbeat expired {expires:%Y-%m-%d %H:%M:%S} UTC"
        return f"no heartbeat, older than {self.grace_s:g} s"


def heartbeat_expiry(lease: Any) -> datetime | None:
    """When this Lease's holder stops counting as alive: ``renewTime + leaseDurationSeconds``."""
    spec = lease.spec
    stamp = (spec.renew_time or spec.acquire_time) if spec else None
    if stamp is None:
        return None
    return stamp + timedelta(seconds=spec.lease_duration_seconds or 0)


def read_runs(cluster: Cluster, own: str | None = None, grace_s: float = 120.0) -> Runs:
    """Every run's heartbeat, in whichever namespace it is, against the server's time now."""
    heartbeats: dict[str, datetime] = {}
    leases = cluster.coordination().list_lease_for_all_namespaces(label_selector=selector())
    for lease in leases.items:
        if not lease.metadata.name.startswith(HEARTBEAT_PREFIX):
            continue
        run_id = (lease.metadata.labels or {}).get(RUN_ID) or lease.spec.holder_identity
        expires = heartbeat_expiry(lease)
        if run_id and expires is not None:
            heartbeats[run_id] = max(expires, heartbeats.get(run_id, expires))
    return Runs(server_now(cluster), heartbeats, own, grace_s)
