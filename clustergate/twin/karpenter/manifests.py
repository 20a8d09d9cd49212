"""What ``twin up --autoscaler=karpenter`` installs: the CRDs, the controller Deployment in
kube-system (as the v1 Helm chart with ``KARPENTER_NAMESPACE=kube-system``), and the default
EC2NodeClass and NodePool of Karpenter's getting-started guide, discovering subnets and
security groups by the ``karpenter.sh/discovery`` tag."""

from __future__ import annotations

from typing import Any

from clustergate.twin.addons import KARPENTER_IMAGE
from clustergate.twin.karpenter.crds import AWS_GROUP, CORE_GROUP, CRDS, VERSION
from clustergate.twin.settings import TwinSettings

Obj = dict[str, Any]
DISCOVERY_TAG = "karpenter.sh/discovery"
NAME = "karpenter"


def crds() -> list[tuple[str, Obj]]:
    return [("apiextensions.k8s.io/v1/customresourcedefinitions", crd) for crd in CRDS]


def controller(settings: TwinSettings) -> list[tuple[str, Obj]]:
    labels = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": NAME}
    meta = {"name": NAME, "namespace": "kube-system", "labels": labels}
    container = {
        "name": "controller",
        "image": KARPENTER_IMAGE,
        "env": [
            {"name": "CLUSTER_NAME", "value": settings.network.cluster_name},
            {"name": "AWS_REGION", "value": settings.network.region},
            {"name": "BATCH_IDLE_DURATION", "value": "1s"},
        ],
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": NAME,
                    "priorityClassName": "system-cluster-critical",
                    "containers": [container],
                },
            },
        },
    }
    service_account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}
    return [("v1/serviceaccounts", service_account), ("apps/v1/deployments", deployment)]


def default_pool(settings: TwinSettings, node_role: str) -> list[tuple[str, Obj]]:
    cluster = settings.network.cluster_name
    node_class = {
        "apiVersion": f"{AWS_GROUP}/{VERSION}",
        "kind": "EC2NodeClass",
        "metadata": {"name": "default"},
        "spec": {
            "role": node_role,
            "amiSelectorTerms": [{"alias": "al2023@latest"}],
            "subnetSelectorTerms": [{"tags": {DISCOVERY_TAG: cluster}}],
            "securityGroupSelectorTerms": [{"tags": {DISCOVERY_TAG: cluster}}],
        },
    }
    pool = {
        "apiVersion": f"{CORE_GROUP}/{VERSION}",
        "kind": "NodePool",
        "metadata": {"name": "default"},
        "spec": {
            "template": {
                "spec": {
                    "nodeClassRef": {"group": AWS_GROUP, "kind": "EC2NodeClass", "name": "default"},
                    "requirements": [
                        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
                        {
                            "key": "karpenter.sh/capacity-type",
                            "operator": "In",
                            "values": ["on-demand"],
                        },
                        {
                            "key": "karpenter.k8s.aws/instance-category",
                            "operator": "In",
                            "values": ["c", "m", "r"],
                        },
                    ],
                    "expireAfter": "720h",
                }
            },
            "limits": {"cpu": "1000"},
            "disruption": {
                "consolidationPolicy": "WhenEmptyOrUnderutilized",
                # stands for the getting-started guide's 1m, as the twin's delays are short
                "consolidateAfter": f"{max(1, round(settings.timings.scale_down_unneeded))}s",
            },
        },
    }
    return [
        (f"{AWS_GROUP}/{VERSION}/ec2nodeclasses", node_class),
        (f"{CORE_GROUP}/{VERSION}/nodepools", pool),
    ]
