"""The twin's cluster autoscaler: an add-on runtime that follows the real one.

:func:`register_autoscaler_addon` tells the twin's kubelets that a pod with the
cluster-autoscaler image runs :class:`~clustergate.twin.autoscaler.runtime.ClusterAutoscaler`.
Its life is the pod's: scale the Deployment to zero and nothing autoscales. With more than one
replica only one works at a time, as leader election makes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from clustergate.twin.addons import AUTOSCALER_IMAGE, AddonRegistry, PodPlacement
from clustergate.twin.autoscaler.runtime import ClusterAutoscaler
from clustergate.twin.kubeclient import KubeClient
from clustergate.twin.netmap import Netmap
from clustergate.twin.settings import TwinSettings

__all__ = ["ClusterAutoscaler", "register_autoscaler_addon"]


def register_autoscaler_addon(
    registry: AddonRegistry,
    settings: TwinSettings,
    netmap: Netmap,
    client_factory: Callable[[], KubeClient],
) -> None:
    leadership = asyncio.Lock()

    def factory(placement: PodPlacement) -> ClusterAutoscaler:
        return ClusterAutoscaler(placement, settings, netmap, client_factory, leadership)

    registry.register(AUTOSCALER_IMAGE, factory)
