"""The Node object a kubelet on an EKS managed node registers, and its Lease."""

from __future__ import annotations

import hashlib

from clustergate.twin.cloud import InstanceSpec
from clustergate.twin.controllers.objects import Obj, micro_timestamp, timestamp
from clustergate.twin.settings import TwinSettings

KUBELET_PORT = 10250
LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40
CONTAINER_RUNTIME = "containerd://1.7.22"
NOT_READY_MESSAGE = (
    "container runtime network not ready: NetworkReady=false "
    "reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized"
)


def ami_id(release_version: str) -> str:
    """The AMI id the twin uses for an EKS AMI release (stable per release version)."""
    return "ami-" + hashlib.sha256(release_version.encode()).hexdigest()[:17]


def reserved_cpu_millis(cpu_millis: int) -> int:
    """EKS AMI kube-reserved CPU: 6% of the first core, 1% of the second, 0.5% of the next two,
    0.25% of the rest."""
    bands = ((1000, 0.06), (1000, 0.01), (2000, 0.005), (10**9, 0.0025))
    left, reserved = cpu_millis, 0.0
    for size, share in bands:
        portion = min(left, size)
        reserved += portion * share
        left -= portion
    return round(reserved)


def reserved_memory_mib(max_pods: int) -> int:
    """EKS AMI kube-reserved memory (255 Mi + 11 Mi per pod) plus the 100 Mi eviction threshold."""
    return 255 + 11 * max_pods + 100


def node_labels(spec: InstanceSpec, settings: TwinSettings) -> dict[str, str]:
    region = settings.network.region
    labels = {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/instance-type": spec.instance_type,
        "beta.kubernetes.io/os": "linux",
        "failure-domain.beta.kubernetes.io/region": region,
        "failure-domain.beta.kubernetes.io/zone": spec.zone,
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": spec.node_name,
        "kubernetes.io/os": "linux",
        "node.kubernetes.io/instance-type": spec.instance_type,
        "topology.kubernetes.io/region": region,
        "topology.kubernetes.io/zone": spec.zone,
    }
    if spec.nodegroup:  # a managed node group's node; Karpenter's carry its own labels
        labels["eks.amazonaws.com/nodegroup"] = spec.nodegroup
        labels["eks.amazonaws.com/nodegroup-image"] = ami_id(spec.release_version)
        labels["eks.amazonaws.com/capacityType"] = "ON_DEMAND"
    labels.update(spec.labels)
    return labels


def node_conditions(ready: bool, previous: list[Obj] | None = None) -> list[Obj]:
    stamp = timestamp()
    before = {c.get("type"): c for c in previous or []}
    wanted = [
        ("MemoryPressure", "False", "KubeletHasSufficientMemory",
         "kubelet has sufficient memory available"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ("Ready", "True", "KubeletReady", "kubelet is posting ready status")
        if ready
        else ("Ready", "False", "KubeletNotReady", NOT_READY_MESSAGE),
    ]  # fmt: skip
    conditions = []
    for kind, status, reason, message in wanted:
        old = before.get(kind) or {}
        conditions.append(
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": old.get("lastTransitionTime", stamp)
                if old.get("status") == status
                else stamp,
            }
        )
    return conditions


def node_status(spec: InstanceSpec, ready: bool, previous: list[Obj] | None = None) -> Obj:
    memory_ki = spec.memory_mib * 1024
    allocatable_ki = (spec.memory_mib - reserved_memory_mib(spec.max_pods)) * 1024
    storage = {"ephemeral-storage": "20959212Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0"}
    seed = hashlib.sha256(spec.instance_id.encode()).hexdigest()
    return {
        "capacity": {
            "cpu": str(spec.cpu_millis // 1000)
            if spec.cpu_millis % 1000 == 0
            else f"{spec.cpu_millis}m",
            "memory": f"{memory_ki}Ki",
            "pods": str(spec.max_pods),
            **storage,
        },
        "allocatable": {
            "cpu": f"{spec.cpu_millis - reserved_cpu_millis(spec.cpu_millis)}m",
            "memory": f"{allocatable_ki}Ki",
            "pods": str(spec.max_pods),
            **{**storage, "ephemeral-storage": "18242267924"},
        },
        "addresses": [
            {"type": "InternalIP", "address": spec.node_ip},
            {"type": "InternalDNS", "address": spec.node_name},
            {"type": "Hostname", "address": spec.node_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": KUBELET_PORT}},
        "nodeInfo": {
            "architecture": "amd64",
            "bootID": f"{seed[:8]}-{seed[8:12]}-{seed[12:16]}-{seed[16:20]}-{seed[20:32]}",
            "containerRuntimeVersion": CONTAINER_RUNTIME,
            "kernelVersion": "5.10.227-219.884.amzn2.x86_64",
            "kubeProxyVersion": spec.kubelet_version,
            "kubeletVersion": spec.kubelet_version,
            "machineID": seed[32:64],
            "operatingSystem": "linux",
            "osImage": "Amazon Linux 2",
            "systemUUID": f"ec2{seed[3:8]}-{seed[8:12]}-{seed[12:16]}-{seed[16:20]}-{seed[20:32]}",
        },
        "conditions": node_conditions(ready, previous),
    }


def node_object(spec: InstanceSpec, settings: TwinSettings, ready: bool) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.node_name,
            "labels": node_labels(spec, settings),
            "annotations": {
                "alpha.kubernetes.io/provided-node-ip": spec.node_ip,
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                **spec.annotations,
            },
        },
        "spec": {
            "providerID": f"aws:///{spec.zone}/{spec.instance_id}",
            **({"taints": [dict(t) for t in spec.taints]} if spec.taints else {}),
        },
        "status": node_status(spec, ready),
    }


def lease_object(node: Obj) -> Obj:
    name = node["metadata"]["name"]
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": LEASE_NAMESPACE,
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "name": name,
                    "uid": node["metadata"]["uid"],
                }
            ],
        },
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": micro_timestamp(),
        },
    }
