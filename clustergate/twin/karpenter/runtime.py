"""One Karpenter controller pod at work against the twin.

Every ``timings.autoscaler_scan`` seconds the leader (one pod at a time, as leader election
makes it) reconciles the status of every EC2NodeClass (selector terms resolved against EC2,
:mod:`.nodeclass`) and then of every NodePool (readiness from its NodeClass, resources from its
NodeClaims, :mod:`.nodepool`). Status is written through the status subresource, only when it
changes, as controller-runtime's patch helpers do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from clustergate.twin.addons import PodPlacement
from clustergate.twin.karpenter import nodeclass, nodepool
from clustergate.twin.karpenter.conditions import render
from clustergate.twin.karpenter.crds import AWS_GROUP, CORE_GROUP, VERSION
from clustergate.twin.karpenter.ec2 import Ec2
from clustergate.twin.kubeclient import ApiError, KubeClient, resource_path
from clustergate.twin.netmap import Netmap
from clustergate.twin.pacing import pause_after
from clustergate.twin.settings import TwinSettings

log = logging.getLogger(__name__)
Obj = dict[str, Any]
NODECLASSES = f"{AWS_GROUP}/{VERSION}"
CORE = f"{CORE_GROUP}/{VERSION}"


class Karpenter:
    """The add-on runtime for one Karpenter controller pod."""

    def __init__(
        self,
        placement: PodPlacement,
        settings: TwinSettings,
        netmap: Netmap,
        client_factory: Callable[[], KubeClient],
        leadership: asyncio.Lock,
    ) -> None:
        self._placement = placement
        self._settings = settings
        self._netmap = netmap
        self._client_factory = client_factory
        self._leadership = leadership
        self._client: KubeClient | None = None
        self._ec2: Ec2 | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._client = self._client_factory()
        network = self._settings.network
        self._ec2 = await asyncio.to_thread(
            Ec2, self._netmap, network.region, network.cluster_name, network.kubernetes_version
        )
        self._task = asyncio.create_task(self._run(), name="karpenter")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._client is not None:
            await self._client.close()

    async def _run(self) -> None:
        async with self._leadership:
            log.info("karpenter %s is the leader", self._placement.pod["metadata"]["name"])
            interval = self._settings.timings.autoscaler_scan
            while True:
                started = time.monotonic()
                try:
                    await self.reconcile()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("karpenter reconcile failed")
                await asyncio.sleep(pause_after(interval, time.monotonic() - started))

    async def reconcile(self) -> None:
        assert self._client is not None
        assert self._ec2 is not None
        classes = (await self._client.list(f"/apis/{NODECLASSES}/ec2nodeclasses"))["items"]
        by_name: dict[str, Obj] = {}
        for node_class in classes:
            resolved = await asyncio.to_thread(self._ec2.resolve, node_class.get("spec") or {})
            status = {
                **nodeclass.status(resolved),
                "conditions": render(
                    _conditions(node_class),
                    nodeclass.conditions(resolved),
                    node_class["metadata"].get("generation", 1),
                ),
            }
            by_name[node_class["metadata"]["name"]] = await self._write_status(
                NODECLASSES, "ec2nodeclasses", node_class, status
            )
        claims = (await self._client.list(f"/apis/{CORE}/nodeclaims"))["items"]
        for pool in (await self._client.list(f"/apis/{CORE}/nodepools"))["items"]:
            name = pool["metadata"]["name"]
            ref = pool["spec"]["template"]["spec"]["nodeClassRef"]
            node_class = by_name.get(ref["name"]) if ref.get("kind") == "EC2NodeClass" else None
            mine = [
                c
                for c in claims
                if c["metadata"].get("labels", {}).get(nodepool.NODEPOOL_LABEL) == name
            ]
            status = {
                "resources": nodepool.resources(mine),
                "conditions": render(
                    _conditions(pool),
                    nodepool.conditions(node_class),
                    pool["metadata"].get("generation", 1),
                ),
            }
            if node_class is not None:
                status["nodeClassObservedGeneration"] = node_class["metadata"].get("generation", 1)
            await self._write_status(CORE, "nodepools", pool, status)

    async def _write_status(self, group_version: str, plural: str, obj: Obj, status: Obj) -> Obj:
        assert self._client is not None
        if (obj.get("status") or {}) == status:
            return obj
        path = resource_path(group_version, plural, None, obj["metadata"]["name"])
        try:
            return await self._client.update_status(path, {**obj, "status": status})
        except ApiError as error:
            if error.status in (404, 409):
                return {**obj, "status": status}
            raise


def _conditions(obj: Obj) -> list[Obj]:
    return list((obj.get("status") or {}).get("conditions") or [])
