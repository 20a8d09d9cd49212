"""core/v1 Events, recorded the way client-go's EventRecorder does: one Event object per
(object, reason, message) whose count and lastTimestamp rise when it happens again."""

from __future__ import annotations

import logging
import secrets
import time

from clustergate.twin.controllers.objects import Obj, timestamp
from clustergate.twin.kubeclient import ApiError, KubeClient, resource_path

log = logging.getLogger(__name__)

#: client-go's EventCorrelator aggregates repeats within this window.
_AGGREGATION_SECONDS = 600.0


class EventRecorder:
    def __init__(self, client: KubeClient, component: str, host: str = "") -> None:
        self.client = client
        self.component = component
        self.host = host
        #: (uid, reason, message, type) -> (namespace, event name, count, when last recorded)
        self._seen: dict[tuple[str, str, str, str], tuple[str, str, int, float]] = {}

    async def record(self, obj: Obj, event_type: str, reason: str, message: str) -> None:
        """Record an event about ``obj``; failures are logged, never raised (as client-go)."""
        try:
            await self._record(obj, event_type, reason, message)
        except ApiError as error:
            log.warning("event %s for %s not recorded: %s", reason, obj["metadata"]["name"], error)

    async def _record(self, obj: Obj, event_type: str, reason: str, message: str) -> None:
        meta = obj["metadata"]
        namespace = meta.get("namespace") or "default"
        identity = (str(meta.get("uid", meta["name"])), reason, message, event_type)
        stamp = timestamp()
        seen = self._seen.get(identity)
        if seen and time.monotonic() - seen[3] < _AGGREGATION_SECONDS:
            event_namespace, name, count, _ = seen
            path = resource_path("v1", "events", event_namespace, name)
            try:
                await self.client.patch(path, {"count": count + 1, "lastTimestamp": stamp})
                self._seen[identity] = (event_namespace, name, count + 1, time.monotonic())
                return
            except ApiError as error:
                if error.status != 404:
                    raise
        name = f"{meta['name']}.{secrets.token_hex(8)}"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion", "v1"),
                "kind": obj.get("kind", ""),
                "name": meta["name"],
                "namespace": meta.get("namespace", ""),
                "uid": meta.get("uid", ""),
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "reason": reason,
            "message": message,
            "type": event_type,
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {"component": self.component, **({"host": self.host} if self.host else {})},
            "reportingComponent": self.component,
            "reportingInstance": self.host or self.component,
        }
        await self.client.create(resource_path("v1", "events", namespace), body)
        self._seen[identity] = (namespace, name, 1, time.monotonic())
