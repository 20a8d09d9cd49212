"""Benchmark: from nothing to 10 Ready nodes (API server, controllers, 10 kubelets), then to a
100-replica Deployment fully available. Prints the figures; asserts nothing about speed.

    python -m tests.twin.bench_twin_start
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable

from clustergate.twin.addons import AddonRegistry
from clustergate.twin.apiserver import ApiServer
from clustergate.twin.controllers import ControllerManager
from clustergate.twin.controllers.objects import node_ready
from clustergate.twin.kubeclient import KubeClient
from clustergate.twin.kubelet import KubeletPool
from clustergate.twin.kubelet_hub import KubeletHub
from clustergate.twin.netmap import Netmap
from clustergate.twin.settings import Timings, TwinSettings
from tests.twin.test_controllers_e2e import deployment, instance

NODES = 10
REPLICAS = 100


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 120.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if await check():
            return time.monotonic() - start
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{what} not reached within {timeout} s")


async def run(node_boot: float) -> None:
    with tempfile.TemporaryDirectory() as state:
        settings = TwinSettings(state_dir=state, timings=Timings(node_boot=node_boot))
        netmap, hub, addons = Netmap(), KubeletHub(), AddonRegistry()
        began = time.monotonic()
        server = ApiServer(settings, netmap, hub)
        await server.start()

        def factory() -> KubeClient:
            return KubeClient(server.url, server.ca_pem_path, server.admin_token)

        manager = ControllerManager(settings, factory)
        await manager.start()
        pool = KubeletPool(settings, factory, hub, netmap, addons)
        for index in range(NODES):
            await pool.launch(instance(settings, index))
        client = factory()

        async def nodes_ready() -> bool:
            nodes = (await client.list("/api/v1/nodes"))["items"]
            return sum(1 for n in nodes if node_ready(n)) == NODES

        await until(nodes_ready, f"{NODES} Ready nodes")
        to_nodes = time.monotonic() - began
        body = deployment("bench", REPLICAS)
        await client.create("/apis/apps/v1/namespaces/default/deployments", body)

        async def available() -> bool:
            d = await client.get("/apis/apps/v1/namespaces/default/deployments/bench")
            return (d.get("status") or {}).get("availableReplicas") == REPLICAS

        to_available = await until(available, f"{REPLICAS} available replicas")
        print(
            f"node_boot={node_boot:.1f}s: {NODES} Ready nodes after {to_nodes:.2f} s "
            f"(boot delay included); {REPLICAS}-replica Deployment available after "
            f"{to_available:.2f} s more"
        )
        await client.close()
        await pool.stop()
        await manager.stop()
        await server.stop()


if __name__ == "__main__":
    asyncio.run(run(Timings().node_boot))
    asyncio.run(run(0.0))
