"""Cluster add-ons whose pods the twin's kubelets bring to life.

Most images are simulated: the kubelet marks their containers Running and Ready after a delay.
The add-ons that make an EKS cluster what it is (CoreDNS, NodeLocal DNSCache, the cluster
autoscaler) are different: when a kubelet starts a pod with one of their images it starts the
twin's implementation of that add-on for that pod, and stops it when the pod goes. So the twin
follows its workloads: scale the autoscaler Deployment to zero and nothing autoscales; a node
without a node-local-dns pod has no cache.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

COREDNS_IMAGE = "602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/coredns:v1.11.3-eksbuild.2"
NODELOCAL_IMAGE = "registry.k8s.io/dns/k8s-dns-node-cache:1.23.1"
AUTOSCALER_IMAGE = "registry.k8s.io/autoscaling/cluster-autoscaler:v1.31.1"
KARPENTER_IMAGE = "public.ecr.aws/karpenter/controller:1.0.8"


@dataclass(frozen=True)
class PodPlacement:
    """What an add-on runtime learns about the pod it runs as."""

    pod: dict[str, Any]
    node_name: str
    node_ip: str
    pod_ip: str
    #: Writes one line to the container's log (what the process would print to stderr).
    log: Callable[[str], None] = field(default=lambda _line: None, compare=False)

    def container(self, image: str) -> dict[str, Any]:
        """The pod's container running ``image`` (tag aside)."""
        containers = (self.pod.get("spec") or {}).get("containers") or []
        wanted = _repository(image)
        return next((c for c in containers if _repository(c.get("image", "")) == wanted), {})


class AddonRuntime(Protocol):
    async def start(self) -> None:
        """Open sockets and start work; return when the add-on is ready to serve."""
        ...

    async def stop(self) -> None: ...


AddonFactory = Callable[[PodPlacement], AddonRuntime]


class AddonRegistry:
    """Image (without tag) → factory. Filled by the twin at start-up, read by kubelets."""

    def __init__(self) -> None:
        self._factories: dict[str, AddonFactory] = {}

    def register(self, image: str, factory: AddonFactory) -> None:
        self._factories[_repository(image)] = factory

    def factory_for(self, image: str) -> AddonFactory | None:
        return self._factories.get(_repository(image))


def _repository(image: str) -> str:
    name = image.split("@", 1)[0]
    head, _, tail = name.rpartition(":")
    return head if head and "/" not in tail else name
