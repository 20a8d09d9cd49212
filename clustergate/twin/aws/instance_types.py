"""The EC2 instance types the twin can launch, as DescribeInstanceTypes would size them
(vCPUs, MiB of memory, and the VPC CNI's max pods: ENIs x (IPv4 per ENI - 1) + 2) and what
they cost on demand in us-west-2 (USD per hour, late 2024), which Karpenter launches by."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InstanceType:
    name: str
    cpu_millis: int
    memory_mib: int
    max_pods: int
    price: float

    @property
    def category(self) -> str:
        return self.name[0]

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]


INSTANCE_TYPES = (
    InstanceType("c5.large", 2000, 4096, 29, 0.085),
    InstanceType("c5.xlarge", 4000, 8192, 58, 0.17),
    InstanceType("m5.large", 2000, 8192, 29, 0.096),
    InstanceType("m5.xlarge", 4000, 16384, 58, 0.192),
    InstanceType("m5.2xlarge", 8000, 32768, 58, 0.384),
    InstanceType("r5.large", 2000, 16384, 29, 0.126),
    InstanceType("r5.xlarge", 4000, 32768, 58, 0.252),
)
BY_NAME = {kind.name: kind for kind in INSTANCE_TYPES}
