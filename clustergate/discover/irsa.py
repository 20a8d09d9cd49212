"""IRSA: every ServiceAccount annotated with a role, and every EKS Pod Identity association."""

from __future__ import annotations

import boto3

from clustergate.discover import calls
from clustergate.discover.found import Found, Section
from clustergate.kube import Cluster, list_all

ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"
MUST_CALLS = (
    "Add to each mapping the AWS calls its role must be allowed and refused, e.g. "
    "must_allow: [{service: s3, operation: ListObjectsV2, parameters: {Bucket: NAME}}] and "
    "must_deny: [...]; nobody can discover them, and without them the calls check skips."
)


def discover(cluster: Cluster, session: boto3.Session, cluster_name: str) -> Section:
    accounts = calls.kube(
        cluster,
        "listing serviceaccounts in all namespaces",
        list_all,
        cluster.core().list_service_account_for_all_namespaces,
    )
    section = Section()
    for account in sorted(accounts, key=lambda a: (a.metadata.namespace, a.metadata.name)):
        role = (account.metadata.annotations or {}).get(ROLE_ANNOTATION)
        if not role:
            continue
        where = f"ServiceAccount {account.metadata.namespace}/{account.metadata.name}"
        section.items.append(
            {
                "namespace": Found(account.metadata.namespace, where),
                "service_account": Found(account.metadata.name, where),
                "role_arn": Found(role, f"{where} annotation {ROLE_ANNOTATION}"),
            }
        )
    _add_pod_identities(session, cluster_name, section)
    section.notes.append(MUST_CALLS)
    return section


def _add_pod_identities(session: boto3.Session, cluster_name: str, section: Section) -> None:
    eks = session.client("eks")
    try:
        summaries = calls.aws_pages(
            eks, "list_pod_identity_associations", "associations", clusterName=cluster_name
        )
    except calls.Unsupported as why:
        section.notes.append(f"EKS Pod Identity associations not read: {why}")
        return
    mapped = {(i["namespace"].value, i["service_account"].value) for i in section.items}
    for summary in summaries:
        association = calls.aws(
            eks,
            "describe_pod_identity_association",
            clusterName=cluster_name,
            associationId=summary["associationId"],
        )["association"]
        key = (association["namespace"], association["serviceAccount"])
        where = f"eks:DescribePodIdentityAssociation {summary['associationId']}"
        if key in mapped:
            section.notes.append(f"{key[0]}/{key[1]} also has a Pod Identity association ({where})")
            continue
        mapped.add(key)
        section.items.append(
            {
                "namespace": Found(association["namespace"], where),
                "service_account": Found(association["serviceAccount"], where),
                "role_arn": Found(association["roleArn"], where),
            }
        )
