"""Draining a node as a managed node-group update does.

Every pod but DaemonSet and mirror pods leaves through the Eviction API (``POST
.../pods/<name>/eviction`` with a policy/v1 Eviction), so PodDisruptionBudgets are enforced by
the API server. A budget's refusal (429) is retried until the time limit; with ``force`` the
refused pod is deleted instead, as EKS's force flag ignores budgets. The node counts as drained
when none of those pods is left on it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from clustergate.twin.kubeclient import ApiError, KubeClient, resource_path

log = logging.getLogger(__name__)

Obj = dict[str, Any]
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
#: kubectl drain waits 5 s after a 429; shorter time limits retry proportionally faster.
MAX_RETRY_SECONDS = 5.0


def must_leave(pod: Obj) -> bool:
    """Whether draining moves this pod (DaemonSet pods stay; mirror pods cannot be evicted)."""
    meta = pod["metadata"]
    if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
        return False
    owners = meta.get("ownerReferences") or []
    return not any(owner.get("kind") == "DaemonSet" for owner in owners)


async def drain_node(client: KubeClient, node_name: str, *, force: bool, limit: float) -> list[str]:
    """Evict the node's pods; return ``namespace/name`` of those still there after ``limit``
    seconds (empty when the node was drained)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    retry = min(MAX_RETRY_SECONDS, max(limit / 10, 0.05))
    while True:
        listing = await client.list("/api/v1/pods", field_selector=f"spec.nodeName={node_name}")
        left = [pod for pod in listing["items"] if must_leave(pod)]
        if not left:
            return []
        if loop.time() >= deadline:
            return sorted(f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in left)
        await asyncio.gather(
            *(
                _evict(client, pod, force)
                for pod in left
                if not pod["metadata"].get("deletionTimestamp")
            )
        )
        await asyncio.sleep(min(retry, max(deadline - loop.time(), 0)))


async def _evict(client: KubeClient, pod: Obj, force: bool) -> None:
    meta = pod["metadata"]
    path = resource_path("v1", "pods", meta["namespace"], meta["name"])
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
    }
    try:
        await client.post_subresource(path, "eviction", eviction)
    except ApiError as error:
        if error.status == 404:
            return
        if error.status == 429 and force:
            log.info("force: deleting %s/%s despite its budget", meta["namespace"], meta["name"])
            await client.delete(path, uid=meta["uid"])
            return
        log.info("eviction of %s/%s refused: %s", meta["namespace"], meta["name"], error)
