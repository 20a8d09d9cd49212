"""KubeletPool: the cloud.NodeLauncher that boots and terminates the twin's kubelets."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from clustergate.twin.addons import AddonRegistry
from clustergate.twin.cloud import InstanceSpec
from clustergate.twin.controllers.base import ClientFactory
from clustergate.twin.kubeclient import ApiError, resource_path
from clustergate.twin.kubelet.kubelet import Kubelet
from clustergate.twin.kubelet_hub import KubeletHub
from clustergate.twin.netmap import Netmap
from clustergate.twin.settings import TwinSettings

log = logging.getLogger(__name__)

_DELETE_ATTEMPTS = 6


class KubeletPool:
    """One kubelet per instance. ``launch`` returns at once; the kubelet registers its Node
    after the boot delay. ``terminate`` stops the kubelet and deletes its Node, as the cloud
    node lifecycle controller does when an instance is gone."""

    def __init__(
        self,
        settings: TwinSettings,
        client_factory: ClientFactory,
        hub: KubeletHub,
        netmap: Netmap,
        addons: AddonRegistry,
    ) -> None:
        self.settings = settings
        self._client_factory = client_factory
        self.hub = hub
        self.netmap = netmap
        self.addons = addons
        self.kubelets: dict[str, Kubelet] = {}
        self._boots: dict[str, asyncio.Task[None]] = {}

    async def launch(self, spec: InstanceSpec) -> None:
        if spec.instance_id in self.kubelets:
            return
        kubelet = Kubelet(
            self.settings, self._client_factory, spec, self.hub, self.netmap, self.addons
        )
        self.kubelets[spec.instance_id] = kubelet
        self._boots[spec.instance_id] = asyncio.create_task(
            self._boot(kubelet), name=f"boot {spec.node_name}"
        )

    @staticmethod
    async def _boot(kubelet: Kubelet) -> None:
        try:
            await kubelet.start()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("kubelet %s failed to start", kubelet.node_name)
            raise

    async def booted(self, instance_id: str) -> None:
        """Wait until that instance's kubelet has registered its Node (or failed to)."""
        await self._boots[instance_id]

    async def terminate(self, instance_id: str) -> None:
        kubelet = self.kubelets.pop(instance_id, None)
        if kubelet is None:
            return
        boot = self._boots.pop(instance_id)
        boot.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await boot
        await kubelet.stop()
        client = self._client_factory()
        path = resource_path("v1", "nodes", name=kubelet.node_name)
        try:
            for attempt in range(_DELETE_ATTEMPTS):
                try:
                    await client.delete(path)
                    return
                except ApiError as error:
                    log.warning("node %s not deleted: %s", kubelet.node_name, error)
                    await asyncio.sleep(0.2 * 2**attempt)
            raise RuntimeError(f"node {kubelet.node_name} could not be deleted")
        finally:
            await client.close()

    async def stop(self) -> None:
        """Stop every kubelet (their Nodes stay, as when the whole twin shuts down)."""
        for boot in self._boots.values():
            boot.cancel()
        await asyncio.gather(*self._boots.values(), return_exceptions=True)
        await asyncio.gather(*(k.stop() for k in self.kubelets.values()), return_exceptions=True)
        self.kubelets.clear()
        self._boots.clear()
