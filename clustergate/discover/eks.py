"""The EKS cluster: its name, region, version, OIDC issuer and IAM OIDC provider."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import yaml

from clustergate.discover import calls
from clustergate.discover.found import Found, Section
from clustergate.kube import Cluster

EKS_ARN_MARK = ":cluster/"
#: ``aws eks get-token`` names the cluster with one of these (``-i`` in aws-iam-authenticator).
NAME_FLAGS = ("--cluster-name", "--cluster-id", "-i")


def _named(entries: list[dict[str, Any]] | None, name: object) -> dict[str, Any]:
    return next((e for e in entries or [] if e.get("name") == name), {})


def cluster_name_hint(cluster: Cluster) -> Found | None:
    """The EKS name as ``aws eks update-kubeconfig`` writes it: the kubeconfig's cluster is
    the cluster ARN, and its user runs ``aws eks get-token --cluster-name NAME``."""
    kubeconfig = yaml.safe_load(Path(cluster.kubeconfig).read_text()) or {}
    context = _named(kubeconfig.get("contexts"), cluster.context).get("context") or {}
    cluster_ref = str(context.get("cluster") or "")
    if cluster_ref.startswith("arn:aws") and EKS_ARN_MARK in cluster_ref:
        return Found(cluster_ref.split(EKS_ARN_MARK, 1)[1], f"kubeconfig cluster {cluster_ref}")
    user = _named(kubeconfig.get("users"), context.get("user")).get("user") or {}
    args = [str(a) for a in (user.get("exec") or {}).get("args") or []]
    for flag in NAME_FLAGS:
        if flag in args[:-1]:
            return Found(args[args.index(flag) + 1], f"kubeconfig user's exec {flag}")
    return None


def _only_cluster(eks: Any, region: str) -> Found:
    names = calls.aws_pages(eks, "list_clusters", "clusters")
    if len(names) != 1:
        raise calls.DiscoveryError(
            "cannot tell which EKS cluster the kubeconfig points at (its context names no "
            f"cluster ARN), and region {region} holds {len(names)} clusters "
            f"({', '.join(names) or 'none'}); pass --cluster-name"
        )
    return Found(names[0], f"eks:ListClusters, the only cluster in {region}")


def discover(
    cluster: Cluster, session: boto3.Session, name: Found | None, region: Found
) -> Section:
    """The ``cluster`` section; the OIDC issuer and its IAM provider as notes."""
    eks = session.client("eks")
    found_name = name or cluster_name_hint(cluster) or _only_cluster(eks, region.value)
    described = calls.aws(eks, "describe_cluster", name=found_name.value)["cluster"]
    section = Section()
    section.values["name"] = found_name
    section.values["region"] = region
    section.values["kubernetes_version"] = Found(
        str(described["version"]), "eks:DescribeCluster .cluster.version"
    )
    issuer = ((described.get("identity") or {}).get("oidc") or {}).get("issuer")
    section.notes.append(
        f"OIDC issuer: {issuer or 'none'} (eks:DescribeCluster .cluster.identity.oidc.issuer)"
    )
    if issuer:
        exists = _provider_exists(session.client("iam"), issuer)
        state = "exists" if exists else "is MISSING, so no pod can assume a role (irsa fails)"
        section.notes.append(
            f"IAM OIDC provider for this issuer {state} (iam:ListOpenIDConnectProviders)"
        )
    return section


def _provider_exists(iam: Any, issuer: str) -> bool:
    host = issuer.removeprefix("https://")
    providers = calls.aws(iam, "list_open_id_connect_providers")["OpenIDConnectProviderList"]
    return any(str(p["Arn"]).endswith(f":oidc-provider/{host}") for p in providers)
