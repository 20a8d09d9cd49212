"""A continuous watch of a workload's availability, from before a disruption to after it.

Availability is counted as the disruption controller counts a PDB's ``currentHealthy``: pods
that are Ready and not being deleted. The count is taken from a watch on the pods (list, then
watch from the list's resourceVersion, relist on 410 Gone), so every change is seen, not a
sample every few seconds: a dip that lasts 50 ms is on the timeline. A break in the watch (an
error before the relist) is recorded as a gap, so that a verdict never rests on time nobody saw.

The watch also keeps each pod's life (node, first seen Pending, Running, Ready, deletion), which
the drain and upgrade checks use to say where pods went and how long any stayed Pending.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from clustergate.kube import Cluster

log = logging.getLogger("clustergate.availability")

#: Each watch request asks the server to end it after this long; the watch resumes from the
#: last resourceVersion, so nothing is lost, and a stop takes effect within this time.
_WATCH_CHUNK_S = 3
_RETRY_AFTER_ERROR_S = 0.5


def pod_healthy(pod: Any) -> bool:
    """Ready and not being deleted: what a PDB counts as healthy."""
    if pod.metadata.deletion_timestamp is not None:
        return False
    conditions = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


@dataclass(frozen=True)
class Dip:
    """An interval during which availability was below a budget."""

    start: float
    end: float
    lowest: int

    @property
    def duration(self) -> float:
        return self.end - self.start


class Timeline:
    """Step function of a count over time (seconds since the watch started)."""

    def __init__(self) -> None:
        self.points: list[tuple[float, int]] = []

    def record(self, at: float, count: int) -> None:
        if self.points and self.points[-1][1] == count:
            return
        if self.points and at < self.points[-1][0]:
            raise ValueError(f"timeline goes back in time: {at} after {self.points[-1][0]}")
        self.points.append((at, count))

    def value_at(self, at: float) -> int | None:
        value = None
        for when, count in self.points:
            if when > at:
                break
            value = count
        return value

    def _window(self, start: float, end: float) -> list[tuple[float, int]]:
        """The points inside [start, end], with the value in force at ``start`` first."""
        window = []
        before = self.value_at(start)
        if before is not None:
            window.append((start, before))
        window += [(when, count) for when, count in self.points if start < when <= end]
        return window

    def minimum(self, start: float, end: float) -> tuple[int, float] | None:
        """The lowest count in [start, end] and when it was first reached."""
        window = self._window(start, end)
        if not window:
            return None
        lowest = min(count for _, count in window)
        return lowest, next(when for when, count in window if count == lowest)

    def dips_below(self, budget: int, start: float, end: float) -> list[Dip]:
        dips: list[Dip] = []
        opened: float | None = None
        lowest = 0
        for when, count in self._window(start, end):
            if count < budget:
                if opened is None:
                    opened, lowest = when, count
                lowest = min(lowest, count)
            elif opened is not None:
                dips.append(Dip(opened, when, lowest))
                opened = None
        if opened is not None:
            dips.append(Dip(opened, end, lowest))
        return dips


@dataclass
class PodLife:
    """What the watch saw of one pod (times in seconds since the watch started)."""

    uid: str
    name: str
    node: str | None = None
    first_seen: float = 0.0
    pending_since: float | None = None
    running_at: float | None = None
    ready_at: float | None = None
    terminating_at: float | None = None
    deleted_at: float | None = None

    def pending_for(self, now: float) -> float:
        """How long the pod was (or still is) Pending before it ran or went away."""
        if self.pending_since is None:
            return 0.0
        end = self.running_at or self.terminating_at or self.deleted_at or now
        return max(0.0, end - self.pending_since)


class ObjectWatch:
    """List and watch ``list_fn(**kwargs)`` in a thread, calling ``on_change(objects, at)``
    with the full current set after the list and after every event."""

    def __init__(
        self,
        list_fn: Callable[..., Any],
        on_change: Callable[[dict[str, Any], float, str, Any], None],
        what: str,
        **list_kwargs: Any,
    ) -> None:
        self._list_fn = list_fn
        self._on_change = on_change
        self._kwargs = list_kwargs
        self.what = what
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch {what}", daemon=True)
        self.started = 0.0
        self.gaps: list[tuple[float, float, str]] = []
        self.objects: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._failure: BaseException | None = None

    def now(self) -> float:
        return time.monotonic() - self.started

    def start(self, timeout_s: float = 30) -> None:
        """Start and return once the first list is in, so nothing after this call is missed."""
        self.started = time.monotonic()
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise AssertionError(f"could not list {self.what} within {timeout_s:.0f}s")
        if self._failure is not None:
            raise AssertionError(f"could not list {self.what}: {self._failure}")

    def snapshot(self) -> list[Any]:
        with self._lock:
            return list(self.objects.values())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=_WATCH_CHUNK_S + 10)

    def _emit(self, kind: str, obj: Any) -> None:
        with self._lock:
            self._on_change(self.objects, self.now(), kind, obj)

    def _relist(self) -> str:
        listed = self._list_fn(**self._kwargs)
        with self._lock:
            self.objects.clear()
            for item in listed.items:
                self.objects[item.metadata.uid] = item
        self._emit("LISTED", None)
        return str(listed.metadata.resource_version)

    def describe_gaps(self) -> str:
        return "; ".join(f"t={start:.2f}s to t={end:.2f}s ({why})" for start, end, why in self.gaps)

    def _run(self) -> None:
        try:
            version = self._relist()
        except Exception as error:  # reported to start()
            self._failure = error
            self._ready.set()
            return
        self._ready.set()
        gap: tuple[float, str] | None = None
        while not self._stop.is_set():
            try:
                if gap is not None:
                    version = self._relist()
                    self.gaps.append((gap[0], self.now(), gap[1]))
                    gap = None
                version = self._watch_chunk(version)
            except ApiException as error:
                # 410 Gone: the resourceVersion is too old, events in between are lost.
                reason = f"{error.status} {error.reason}"
                log.warning("watch of %s failed (%s); relisting", self.what, reason)
                gap = gap or (self.now(), reason)
                if error.status != 410:
                    self._stop.wait(_RETRY_AFTER_ERROR_S)
            except Exception as error:  # a dropped connection: relist, and say there was a gap
                log.warning("watch of %s failed (%s); relisting", self.what, error)
                gap = gap or (self.now(), str(error))
                self._stop.wait(_RETRY_AFTER_ERROR_S)

    def _watch_chunk(self, version: str) -> str:
        stream = watch.Watch()
        try:
            for event in stream.stream(
                self._list_fn,
                resource_version=version,
                timeout_seconds=_WATCH_CHUNK_S,
                allow_watch_bookmarks=True,
                _request_timeout=_WATCH_CHUNK_S + 30,
                **self._kwargs,
            ):
                if event["type"] == "ERROR":
                    raw = event.get("raw_object") or {}
                    raise ApiException(status=raw.get("code", 500), reason=raw.get("message"))
                version = stream.resource_version or version
                if event["type"] == "BOOKMARK":
                    continue
                obj = event["object"]
                with self._lock:
                    if event["type"] == "DELETED":
                        self.objects.pop(obj.metadata.uid, None)
                    else:
                        self.objects[obj.metadata.uid] = obj
                self._emit(event["type"], obj)
                if self._stop.is_set():
                    break
        finally:
            stream.stop()
        return version


class AvailabilityWatch:
    """The healthy count of the pods ``label_selector`` selects in ``namespace``, over time.

    Use as a context manager: the first list is in when ``__enter__`` returns.
    """

    def __init__(self, cluster: Cluster, namespace: str, label_selector: str) -> None:
        self.namespace = namespace
        self.label_selector = label_selector
        self.timeline = Timeline()
        self.pods: dict[str, PodLife] = {}
        self._watch = ObjectWatch(
            cluster.core().list_namespaced_pod,
            self._changed,
            f"pods {label_selector} in {namespace}",
            namespace=namespace,
            label_selector=label_selector,
        )

    def __enter__(self) -> AvailabilityWatch:
        self._watch.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._watch.stop()

    def now(self) -> float:
        return self._watch.now()

    def at(self, monotonic: float) -> float:
        """A ``time.monotonic()`` reading on this watch's clock."""
        return monotonic - self._watch.started

    @property
    def gaps(self) -> list[tuple[float, float, str]]:
        return list(self._watch.gaps)

    def describe_gaps(self) -> str:
        return self._watch.describe_gaps()

    def healthy_now(self) -> int:
        return self.timeline.points[-1][1] if self.timeline.points else 0

    def current_pods(self) -> list[Any]:
        return self._watch.snapshot()

    def _changed(self, objects: dict[str, Any], at: float, kind: str, obj: Any) -> None:
        if kind == "LISTED":
            present = set(objects)
            for uid, life in self.pods.items():
                if uid not in present and life.deleted_at is None:
                    life.deleted_at = at
            for pod in objects.values():
                self._track(pod, at)
        elif kind == "DELETED":
            life = self._track(obj, at)
            life.deleted_at = at
        else:
            self._track(obj, at)
        self.timeline.record(at, sum(1 for pod in objects.values() if pod_healthy(pod)))

    def _track(self, pod: Any, at: float) -> PodLife:
        uid = pod.metadata.uid
        life = self.pods.get(uid)
        if life is None:
            life = self.pods[uid] = PodLife(uid, pod.metadata.name, first_seen=at)
        node = pod.spec.node_name if pod.spec else None
        if node:
            life.node = node
        phase = pod.status.phase if pod.status else None
        if phase == "Pending" and life.pending_since is None and life.running_at is None:
            life.pending_since = at
        if phase == "Running" and life.running_at is None:
            life.running_at = at
        if pod_healthy(pod) and life.ready_at is None:
            life.ready_at = at
        if pod.metadata.deletion_timestamp is not None and life.terminating_at is None:
            life.terminating_at = at
        return life

    def slowest_start(self, since: float) -> tuple[PodLife, float] | None:
        """Of the pods first seen at or after ``since`` that became Ready, the one that took
        longest from being seen to Ready, and how long."""
        started = [
            (life, life.ready_at - life.first_seen)
            for life in self.pods.values()
            if life.first_seen >= since and life.ready_at is not None
        ]
        return max(started, key=lambda item: item[1], default=None)

    def longest_pending(self) -> tuple[PodLife, float] | None:
        now = self.now()
        lives = [(life, life.pending_for(now)) for life in self.pods.values()]
        return max(lives, key=lambda item: item[1], default=None)

    def describe_dips(self, budget: int, start: float, end: float) -> str:
        dips = self.timeline.dips_below(budget, start, end)
        return "; ".join(
            f"{dip.lowest} healthy from t={dip.start:.2f}s for {dip.duration:.2f}s" for dip in dips
        )
