"""Everything the twin can be told: its shape, its timings and its faults.

One frozen object is built at start-up and handed to every component, so a component never
reads the environment or a file on its own. Every delay is here, short by default, so that the
suites run against the twin in minutes; each one names the real-world value it stands for.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from clustergate.twin.faults import validate_faults

#: The account moto answers for. Kept as moto's default so that moto's own ARNs agree with ours.
ACCOUNT_ID = "123456789012"
AUTOSCALERS = ("cluster-autoscaler", "karpenter")


@dataclass(frozen=True)
class Timings:
    """Delays of the twin, in seconds. Defaults are short; the comment gives the real value."""

    node_boot: float = 1.0  # EC2 instance to Ready node: ~60-90 s
    pod_start: float = 0.3  # image pull + container start: seconds
    node_heartbeat: float = 5.0  # kubelet lease renewal: 10 s
    node_monitor_grace: float = 20.0  # node-monitor-grace-period: 40 s (50 s from 1.32)
    autoscaler_scan: float = 1.0  # --scan-interval: 10 s
    scale_down_unneeded: float = 10.0  # --scale-down-unneeded-time: 10 min
    scale_down_delay_after_add: float = 4.0  # --scale-down-delay-after-add: 10 min
    max_node_provision: float = 30.0  # --max-node-provision-time: 15 min
    upgrade_eviction_limit: float = 20.0  # EKS gives up evicting a node's pods after 15 min
    weight_propagation: float = 0.5  # ELBv2 weight change to take effect: seconds
    record_ttl: float = 1.0  # TTL of the cutover's weighted Route 53 records: 60 s is usual
    slow_factor: float = 8.0  # how much slower the "-slow" faults make the thing they slow
    slow_start: float = 10.0  # kubelet-slow-ready: added to every pod's start (slow pulls)


@dataclass(frozen=True)
class Network:
    """The address plan. Addresses are the ones a real EKS cluster would show; the twin
    reaches them on loopback through :mod:`clustergate.twin.netmap`."""

    region: str = "us-west-2"
    cluster_name: str = "clustergate-twin"
    kubernetes_version: str = "1.31"
    node_cidr: str = "10.0.0.0/17"
    pod_cidr: str = "10.0.128.0/17"
    service_cidr: str = "10.100.0.0/16"
    kube_dns_ip: str = "10.100.0.10"
    nodelocal_ip: str = "169.254.20.10"
    imds_ip: str = "169.254.169.254"
    cluster_domain: str = "cluster.local"
    #: "iptables" (EKS default: the cache also answers on the kube-dns IP) or "ipvs".
    proxy_mode: str = "iptables"

    def node_ip(self, index: int) -> str:
        return str(ipaddress.ip_network(self.node_cidr)[10 + index])

    def service_ip(self, index: int) -> str:
        return str(ipaddress.ip_network(self.service_cidr)[index])

    def pod_ip(self, index: int) -> str:
        network = ipaddress.ip_network(self.pod_cidr)
        if 10 + index >= network.num_addresses:
            raise ValueError(f"pod CIDR {self.pod_cidr} has no address {index}: too many nodes")
        return str(network[10 + index])


@dataclass(frozen=True)
class NodeGroupShape:
    name: str
    size: int
    min_size: int
    max_size: int
    instance_type: str = "m5.large"
    cpu_millis: int = 2000
    memory_mib: int = 7680
    max_pods: int = 29
    #: IMDSv2 PUT response hop limit from the launch template (1 blocks containers).
    imds_hop_limit: int = 1
    zone: str = "us-west-2a"


def default_node_groups(nodes: int) -> tuple[NodeGroupShape, ...]:
    """Spread ``nodes`` over two managed node groups in two zones, as a small EKS cluster."""
    first = max(1, (nodes + 1) // 2)
    second = max(0, nodes - first)
    groups = [
        NodeGroupShape("ng-general-a", first, min_size=1, max_size=first + 4, zone="us-west-2a"),
    ]
    if second:
        groups.append(
            NodeGroupShape(
                "ng-general-b", second, min_size=1, max_size=second + 4, zone="us-west-2b"
            )
        )
    return tuple(groups)


@dataclass(frozen=True)
class TwinSettings:
    state_dir: str
    node_groups: tuple[NodeGroupShape, ...] = field(default_factory=lambda: default_node_groups(3))
    faults: frozenset[str] = frozenset()
    timings: Timings = field(default_factory=Timings)
    network: Network = field(default_factory=Network)
    #: Share of API requests answered with 429/500/dropped connections (issue 12); 0 = none.
    api_fault_rate: float = 0.0
    #: How long start-up may take until every node is Ready and kube-system is available.
    start_timeout_s: float = 120.0
    #: Which weights the cluster config's cutover turns: "elbv2" (the ALB) or "route53".
    cutover_driver: str = "elbv2"
    #: Which autoscaler kube-system runs: "cluster-autoscaler" or "karpenter".
    autoscaler: str = "cluster-autoscaler"

    def __post_init__(self) -> None:
        validate_faults(self.faults)
        if self.autoscaler not in AUTOSCALERS:
            raise ValueError(
                f"autoscaler {self.autoscaler!r} is not one of {', '.join(AUTOSCALERS)}"
            )

    def has_fault(self, name: str) -> bool:
        return name in self.faults

    @property
    def node_count(self) -> int:
        return sum(group.size for group in self.node_groups)
