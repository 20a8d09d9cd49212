"""Where the twin's AWS side meets its Kubernetes side: instances that become nodes.

On EKS an Auto Scaling group launches an EC2 instance, whose kubelet registers a Node; when the
instance terminates, the node goes away. The twin's AWS side decides which instances exist (ASG
desired capacity, node-group updates) and asks a :class:`NodeLauncher` to boot or terminate
the kubelet that stands for each one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class InstanceSpec:
    instance_id: str
    node_name: str  # ip-10-0-0-10.us-west-2.compute.internal, as EKS names nodes
    node_ip: str
    nodegroup: str
    zone: str
    instance_type: str
    kubelet_version: str  # v1.31.2-eks-7f9249a
    release_version: str  # AMI release: 1.31.2-20241106
    cpu_millis: int
    memory_mib: int
    max_pods: int
    imds_hop_limit: int
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()
    #: Set by a fault (upgrade-stuck): the kubelet registers but never becomes Ready.
    never_ready: bool = False
    #: The AMI of an instance launched outside a node group (node groups label theirs).
    image_id: str = ""


class NodeLauncher(Protocol):
    async def launch(self, spec: InstanceSpec) -> None:
        """Boot the instance: its kubelet registers the Node after the node_boot delay."""
        ...

    async def terminate(self, instance_id: str) -> None:
        """Stop the kubelet and delete its Node, as the cloud controller does for gone instances."""
        ...
