"""The twin's control plane loops, each an API client of the twin's API server.

:class:`ControllerManager` runs what kube-controller-manager runs (sharing informers between
controllers, as it does) and the scheduler (with informers of its own, as a separate process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from clustergate.twin.controllers.base import ClientFactory, Controller, SharedInformers
from clustergate.twin.controllers.clusterroleaggregation import ClusterRoleAggregationController
from clustergate.twin.controllers.daemonset import DaemonSetController
from clustergate.twin.controllers.deployment import DeploymentController
from clustergate.twin.controllers.disruption import DisruptionController
from clustergate.twin.controllers.endpoints import EndpointsController
from clustergate.twin.controllers.endpointslice import (
    EndpointSliceController,
    EndpointSliceMirroringController,
)
from clustergate.twin.controllers.garbagecollector import GarbageCollector
from clustergate.twin.controllers.job import JobController
from clustergate.twin.controllers.nodelifecycle import NodeLifecycleController
from clustergate.twin.controllers.podautoscaler import PodAutoscalerController
from clustergate.twin.controllers.podgc import PodGarbageCollector
from clustergate.twin.controllers.replicaset import ReplicaSetController
from clustergate.twin.controllers.scheduler import Scheduler
from clustergate.twin.controllers.serviceaccount import ServiceAccountController
from clustergate.twin.kubeclient import KubeClient
from clustergate.twin.settings import TwinSettings

__all__ = ["ControllerManager"]

log = logging.getLogger(__name__)

CONTROLLER_TYPES: tuple[type[Controller], ...] = (
    ServiceAccountController,
    DeploymentController,
    ReplicaSetController,
    DaemonSetController,
    JobController,
    DisruptionController,
    EndpointsController,
    EndpointSliceController,
    EndpointSliceMirroringController,
    PodAutoscalerController,
    GarbageCollector,
    PodGarbageCollector,
    NodeLifecycleController,
    ClusterRoleAggregationController,
)


class ControllerManager:
    """``await start()`` returns once every informer has listed; ``await stop()`` ends all."""

    def __init__(self, settings: TwinSettings, client_factory: ClientFactory) -> None:
        self.settings = settings
        self._client_factory = client_factory
        self._clients: list[KubeClient] = []
        self._informers: list[SharedInformers] = []
        self.controllers: list[Controller] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, sync_timeout: float = 30.0) -> None:
        manager_client = self._client_factory()
        scheduler_client = self._client_factory()
        self._clients = [manager_client, scheduler_client]
        shared = SharedInformers(manager_client)
        own = SharedInformers(scheduler_client)
        self._informers = [shared, own]
        self.controllers = [
            kind(self.settings, manager_client, shared) for kind in CONTROLLER_TYPES
        ]
        self.controllers.append(Scheduler(self.settings, scheduler_client, own))
        for informers in self._informers:
            informers.start()
        await asyncio.gather(*(informers.synced(sync_timeout) for informers in self._informers))
        self._tasks = [
            asyncio.create_task(self._run(controller), name=controller.name)
            for controller in self.controllers
        ]

    @staticmethod
    async def _run(controller: Controller) -> None:
        try:
            await controller.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("controller %s stopped", controller.name)
            raise

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        for informers in self._informers:
            await informers.stop()
        for client in self._clients:
            await client.close()
