"""The autoscaler: cluster-autoscaler (Deployment and status ConfigMap) or Karpenter NodePools."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from clustergate.discover import calls
from clustergate.discover.found import Found, Section
from clustergate.kube import Cluster, list_all

NAME = "cluster-autoscaler"
#: cluster-autoscaler's default for ``--status-config-map-name``.
STATUS_CONFIGMAP = "cluster-autoscaler-status"
STATUS_FLAG = "--status-config-map-name="
KARPENTER_GROUP = "karpenter.sh"


def _flag(deployment: Any, prefix: str) -> str | None:
    for container in deployment.spec.template.spec.containers:
        for arg in [*(container.command or []), *(container.args or [])]:
            if str(arg).startswith(prefix):
                return str(arg).removeprefix(prefix)
    return None


def _autoscaler_deployment(cluster: Cluster) -> Any:
    """The Deployment named cluster-autoscaler, else one whose name or labels say so (Helm
    names it ``<release>-aws-cluster-autoscaler``)."""
    deployments = calls.kube(
        cluster,
        "listing deployments in all namespaces",
        list_all,
        cluster.apps().list_deployment_for_all_namespaces,
    )
    named = [
        d
        for d in deployments
        if NAME in d.metadata.name or any(NAME in v for v in (d.metadata.labels or {}).values())
    ]
    named.sort(key=lambda d: (d.metadata.name != NAME, d.metadata.namespace, d.metadata.name))
    return named[0] if named else None


def discover(cluster: Cluster) -> Section:
    section = Section()
    deployment = _autoscaler_deployment(cluster)
    if deployment is not None:
        namespace, name = deployment.metadata.namespace, deployment.metadata.name
        where = f"Deployment {namespace}/{name}"
        section.values["kind"] = Found("cluster-autoscaler", where)
        section.values["namespace"] = Found(namespace, where)
        section.values["deployment"] = Found(name, where)
        flagged = _flag(deployment, STATUS_FLAG)
        status = flagged or STATUS_CONFIGMAP
        found = calls.kube(
            cluster,
            f"listing configmaps in {namespace}",
            cluster.core().list_namespaced_config_map,
            namespace,
            field_selector=f"metadata.name={status}",
        ).items
        if found:
            how = f"{where} {STATUS_FLAG}{status}" if flagged else "its default name"
            section.values["status_configmap"] = Found(
                status, f"ConfigMap {namespace}/{status} ({how})"
            )
        else:
            section.notes.append(
                f"No ConfigMap {namespace}/{status}: the autoscaler writes no status "
                "(--write-status-configmap=false?), so the status check fails."
            )
        return section
    groups = calls.kube(cluster, "getting /apis", client.ApisApi(cluster.api).get_api_versions)
    if any(group.name == KARPENTER_GROUP for group in groups.groups):
        section.values["kind"] = Found("karpenter", f"API group {KARPENTER_GROUP} is served")
        pools = calls.kube(
            cluster,
            f"listing nodepools.{KARPENTER_GROUP}",
            client.CustomObjectsApi(cluster.api).list_cluster_custom_object,
            KARPENTER_GROUP,
            "v1",
            "nodepools",
        )
        names = [item["metadata"]["name"] for item in pools.get("items", [])]
        section.notes.append(f"Karpenter NodePools: {', '.join(names) or 'none'}")
        return section
    section.values["kind"] = Found(
        "none", f"no {NAME} Deployment in any namespace, no API group {KARPENTER_GROUP}"
    )
    return section
