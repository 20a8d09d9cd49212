"""The kube-system workloads an EKS cluster comes with, as the twin installs them.

They are ordinary objects created through the API at start-up; the twin's behaviour follows
them (see addons.py). The shapes follow the EKS add-ons and the upstream NodeLocal DNSCache
manifest closely enough that the checks read them exactly as on EKS.
"""

from __future__ import annotations

from typing import Any

from clustergate.twin.addons import AUTOSCALER_IMAGE, COREDNS_IMAGE, NODELOCAL_IMAGE
from clustergate.twin.dns.node_cache_app import installed_corefile
from clustergate.twin.settings import TwinSettings

Obj = dict[str, Any]
#: Under the nodelocal-missing-on-node fault one node carries this taint, which the cache's
#: DaemonSet does not tolerate (its tolerations were narrowed from "everything").
BATCH_TAINT = {"key": "dedicated", "value": "batch", "effect": "NoSchedule"}


def _meta(name: str, labels: dict[str, str], namespace: str = "kube-system") -> Obj:
    return {"name": name, "namespace": namespace, "labels": labels}


def _template(labels: dict[str, str], spec: Obj) -> Obj:
    return {"metadata": {"labels": labels}, "spec": spec}


#: The EKS CoreDNS add-on's Corefile (its default configuration).
COREDNS_COREFILE = """\
.:53 {
    errors
    health {
        lameduck 5s
      }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
      pods insecure
      fallthrough in-addr.arpa ip6.arpa
    }
    prometheus :9153
    forward . /etc/resolv.conf
    cache 30
    loop
    reload
    loadbalance
}
"""


def coredns() -> list[tuple[str, Obj]]:
    labels = {"k8s-app": "kube-dns", "eks.amazonaws.com/component": "coredns"}
    container = {
        "name": "coredns",
        "image": COREDNS_IMAGE,
        "args": ["-conf", "/etc/coredns/Corefile"],
        "ports": [{"containerPort": 53, "name": "dns", "protocol": "UDP"}],
        "resources": {"requests": {"cpu": "100m", "memory": "70Mi"}},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}},
        "volumeMounts": [{"name": "config-volume", "mountPath": "/etc/coredns"}],
    }
    volume = {
        "name": "config-volume",
        "configMap": {"name": "coredns", "items": [{"key": "Corefile", "path": "Corefile"}]},
    }
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta("coredns", labels),
        "data": {"Corefile": COREDNS_COREFILE},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta("coredns", labels),
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": _template(labels, {"containers": [container], "volumes": [volume]}),
        },
    }
    return [("v1/configmaps", configmap), ("apps/v1/deployments", deployment)]


def dns_services(settings: TwinSettings) -> list[tuple[str, Obj]]:
    selector = {"k8s-app": "kube-dns"}
    ports = [
        {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
    ]
    kube_dns = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta("kube-dns", {"k8s-app": "kube-dns"}),
        "spec": {"selector": selector, "clusterIP": settings.network.kube_dns_ip, "ports": ports},
    }
    upstream = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta("kube-dns-upstream", {"k8s-app": "kube-dns-upstream"}),
        "spec": {"selector": selector, "ports": ports},
    }
    return [("v1/services", kube_dns), ("v1/services", upstream)]


def nodelocal(settings: TwinSettings) -> list[tuple[str, Obj]]:
    labels = {"k8s-app": "node-local-dns"}
    ip = settings.network.nodelocal_ip
    listen = ip if settings.network.proxy_mode == "ipvs" else f"{ip},{settings.network.kube_dns_ip}"
    tolerations: list[Obj] = [{"operator": "Exists", "effect": "NoExecute"}, {"operator": "Exists"}]
    if settings.has_fault("nodelocal-missing-on-node"):
        tolerations = [{"key": "CriticalAddonsOnly", "operator": "Exists"}]
    container = {
        "name": "node-cache",
        "image": NODELOCAL_IMAGE,
        "args": ["-localip", listen, "-conf", "/etc/Corefile", "-upstreamsvc", "kube-dns-upstream"],
        "ports": [
            {"containerPort": 53, "name": "dns", "protocol": "UDP"},
            {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
            {"containerPort": 9253, "name": "metrics", "protocol": "TCP"},
        ],
        "livenessProbe": {"httpGet": {"host": ip, "path": "/health", "port": 8080}},
        "resources": {"requests": {"cpu": "25m", "memory": "5Mi"}},
        "volumeMounts": [
            {"name": "config-volume", "mountPath": "/etc/coredns"},
            {"name": "kube-dns-config", "mountPath": "/etc/kube-dns"},
        ],
    }
    volumes = [
        {"name": "kube-dns-config", "configMap": {"name": "kube-dns", "optional": True}},
        {
            "name": "config-volume",
            "configMap": {
                "name": "node-local-dns",
                "items": [{"key": "Corefile", "path": "Corefile.base"}],
            },
        },
    ]
    network = settings.network
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta("node-local-dns", {"addonmanager.kubernetes.io/mode": "Reconcile"}),
        "data": {
            "Corefile": installed_corefile(
                network.cluster_domain, ip, network.kube_dns_ip, network.proxy_mode
            )
        },
    }
    daemonset = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _meta("node-local-dns", labels),
        "spec": {
            "selector": {"matchLabels": labels},
            "updateStrategy": {"rollingUpdate": {"maxUnavailable": "10%"}},
            "template": _template(
                labels,
                {
                    "priorityClassName": "system-node-critical",
                    "hostNetwork": True,
                    "dnsPolicy": "Default",
                    "tolerations": tolerations,
                    "containers": [container],
                    "volumes": volumes,
                },
            ),
        },
    }
    return [("v1/configmaps", configmap), ("apps/v1/daemonsets", daemonset)]


def cluster_autoscaler(settings: TwinSettings) -> list[tuple[str, Obj]]:
    labels = {"app": "cluster-autoscaler"}
    name = settings.network.cluster_name
    timings = settings.timings
    service_account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta("cluster-autoscaler", labels),
    }
    container = {
        "name": "cluster-autoscaler",
        "image": AUTOSCALER_IMAGE,
        "command": [
            "./cluster-autoscaler",
            "--cloud-provider=aws",
            f"--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,"
            f"k8s.io/cluster-autoscaler/{name}",
            f"--scan-interval={timings.autoscaler_scan}s",
            f"--scale-down-unneeded-time={timings.scale_down_unneeded}s",
            f"--scale-down-delay-after-add={timings.scale_down_delay_after_add}s",
            f"--max-node-provision-time={timings.max_node_provision}s",
            "--expander=least-waste",
        ],
        "resources": {"requests": {"cpu": "100m", "memory": "600Mi"}},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta("cluster-autoscaler", labels),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": _template(
                labels,
                {
                    "serviceAccountName": "cluster-autoscaler",
                    "priorityClassName": "system-cluster-critical",
                    "containers": [container],
                },
            ),
        },
    }
    return [("v1/serviceaccounts", service_account), ("apps/v1/deployments", deployment)]


def irsa_service_accounts(mappings: list[tuple[str, str, str]]) -> list[tuple[str, Obj]]:
    """Namespaces and service accounts of the IRSA mappings: (namespace, name, role ARN)."""
    objects: list[tuple[str, Obj]] = []
    for namespace in sorted({item[0] for item in mappings}):
        objects.append(
            (
                "v1/namespaces",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            )
        )
    for namespace, name, role_arn in mappings:
        service_account = {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "annotations": {"eks.amazonaws.com/role-arn": role_arn},
            },
        }
        objects.append(("v1/serviceaccounts", service_account))
    return objects
