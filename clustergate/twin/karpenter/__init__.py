"""The twin's Karpenter: its CRDs, default NodePool and EC2NodeClass, and a controller room.

:func:`register_karpenter_addon` tells the twin's kubelets that a pod with Karpenter's
controller image runs :class:`~clustergate.twin.karpenter.runtime.Karpenter`. Its life is the
pod's: scale the Deployment to zero and nothing reconciles. With more than one replica only
one works at a time, as leader election makes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from clustergate.twin.addons import KARPENTER_IMAGE, AddonRegistry, PodPlacement
from clustergate.twin.karpenter.runtime import Karpenter
from clustergate.twin.kubeclient import KubeClient
from clustergate.twin.netmap import Netmap
from clustergate.twin.settings import TwinSettings

__all__ = ["Karpenter", "register_karpenter_addon"]


def register_karpenter_addon(
    registry: AddonRegistry,
    settings: TwinSettings,
    netmap: Netmap,
    client_factory: Callable[[], KubeClient],
) -> None:
    leadership = asyncio.Lock()

    def factory(placement: PodPlacement) -> Karpenter:
        return Karpenter(placement, settings, netmap, client_factory, leadership)

    registry.register(KARPENTER_IMAGE, factory)
