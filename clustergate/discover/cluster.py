"""All of discovery, source by source, into one :class:`Discovery`."""

from __future__ import annotations

from dataclasses import dataclass, field

import boto3

from clustergate.discover import autoscaler, cutover, dns, eks, irsa, nodegroups
from clustergate.discover.cutover import Candidate
from clustergate.discover.found import Found, Section
from clustergate.kube import Cluster

#: The sections whose values are plain keys of the config.
KEYED = ("cluster", "dns", "autoscaler")
#: Keys written from other discovered values rather than read from the cluster: not drift.
DERIVED = frozenset({"dns.external_names"})


def mapping_key(namespace: str, service_account: str) -> str:
    return f"irsa.mappings[{namespace}/{service_account}].role_arn"


def group_key(name: str) -> str:
    return f"node_groups[{name}]"


@dataclass
class Discovery:
    #: Top-level config key -> what was found for it (irsa and node_groups: items).
    sections: dict[str, Section]
    candidates: list[Candidate] = field(default_factory=list)
    cutover_notes: list[str] = field(default_factory=list)

    def flat(self) -> dict[str, Found]:
        """Every discovered key as a dotted path (``irsa.mappings[ns/sa].role_arn``,
        ``node_groups[name].asg``), the form :mod:`clustergate.discover.drift` compares."""
        values: dict[str, Found] = {}
        for key in KEYED:
            for name, found in self.sections[key].values.items():
                if f"{key}.{name}" not in DERIVED:
                    values[f"{key}.{name}"] = found
        for item in self.sections["irsa"].items:
            values[mapping_key(item["namespace"].value, item["service_account"].value)] = item[
                "role_arn"
            ]
        for item in self.sections["node_groups"].items:
            name = item["name"]
            values[group_key(name.value)] = Found("present", name.source)
            if "asg" in item:
                values[f"{group_key(name.value)}.asg"] = item["asg"]
        return values


def discover(
    cluster: Cluster, session: boto3.Session, name: Found | None, region: Found
) -> Discovery:
    cluster_section = eks.discover(cluster, session, name, region)
    cluster_name = cluster_section.values["name"].value
    candidates, notes = cutover.discover(session)
    dns_section = dns.discover(cluster)
    # Every IRSA pod resolves its regional STS endpoint, so every node must resolve it.
    dns_section.values["external_names"] = Found(
        [f"sts.{region.value}.amazonaws.com"], "the regional STS endpoint, from cluster.region"
    )
    return Discovery(
        sections={
            "cluster": cluster_section,
            "irsa": irsa.discover(cluster, session, cluster_name),
            "dns": dns_section,
            "node_groups": Section(items=nodegroups.discover(session, cluster_name)),
            "autoscaler": autoscaler.discover(cluster),
        },
        candidates=candidates,
        cutover_notes=notes,
    )
