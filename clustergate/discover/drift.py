"""What differs between a cluster config and what discovery reads from the cluster now.

Only keys discovery can read are compared. A key the config leaves to be read at run time
(``cluster.kubernetes_version``, ``node_groups[].asg``) is not drift when absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clustergate.config import ClusterConfig, ElbDriver, Route53Driver
from clustergate.discover.cluster import Discovery, group_key, mapping_key

ABSENT = "(absent)"


@dataclass(frozen=True)
class Drift:
    key: str
    config: Any
    cluster: Any
    #: Where the cluster's value was found, or where it was looked for.
    where: str

    def line(self) -> str:
        return f"{self.key}: config {self.config}, cluster {self.cluster} ({self.where})"


def config_flat(config: ClusterConfig) -> dict[str, Any]:
    """The config's discoverable keys in the dotted form of :meth:`Discovery.flat`; None for
    a key it leaves to be read at run time."""
    values: dict[str, Any] = {
        "cluster.name": config.cluster.name,
        "cluster.region": config.cluster.region,
        "cluster.kubernetes_version": config.cluster.kubernetes_version,
        "dns.nodelocal_ip": config.dns.nodelocal_ip,
        "dns.mode": config.dns.mode,
        "autoscaler.kind": config.autoscaler.kind,
    }
    if config.autoscaler.kind == "cluster-autoscaler":
        values["autoscaler.namespace"] = config.autoscaler.namespace
        values["autoscaler.deployment"] = config.autoscaler.deployment
        values["autoscaler.status_configmap"] = config.autoscaler.status_configmap
    for mapping in config.irsa.mappings:
        values[mapping_key(mapping.namespace, mapping.service_account)] = mapping.role_arn
    for group in config.node_groups:
        values[group_key(group.name)] = "present"
        values[f"{group_key(group.name)}.asg"] = group.asg
    return values


#: Where a key the cluster lacks was looked for.
LOOKED = {
    "cluster.kubernetes_version": "eks:DescribeCluster",
    "dns.": "DaemonSet kube-system/node-local-dns",
    "autoscaler.status_configmap": "the autoscaler's namespace",
    "autoscaler.": "Deployments in all namespaces",
    "irsa.": "ServiceAccount annotations and EKS Pod Identity associations",
    "node_groups[": "eks:ListNodegroups",
}


def _looked(key: str) -> str:
    return next((where for prefix, where in LOOKED.items() if key.startswith(prefix)), "")


def drift(config: ClusterConfig, discovery: Discovery) -> list[Drift]:
    """One :class:`Drift` per discoverable key whose value differs."""
    wanted, seen = config_flat(config), discovery.flat()
    found: list[Drift] = []
    for key in sorted(set(wanted) | set(seen)):
        expected, observed = wanted.get(key), seen.get(key)
        if key in wanted and expected is None:
            continue  # read at run time
        if observed is None:
            if key.startswith("autoscaler.") and config.autoscaler.kind != "cluster-autoscaler":
                continue
            found.append(Drift(key, expected, ABSENT, f"not found in {_looked(key)}"))
        elif key not in wanted:
            if key.endswith(".asg") or (key.startswith("autoscaler.") and key != "autoscaler.kind"):
                continue  # the config leaves it to be read at run time, or has another kind
            found.append(Drift(key, ABSENT, observed.value, observed.source))
        elif expected != observed.value:
            found.append(Drift(key, expected, observed.value, observed.source))
    found.extend(_cutover_drift(config, discovery))
    return found


def _cutover_drift(config: ClusterConfig, discovery: Discovery) -> list[Drift]:
    driver = config.cutover.driver if config.cutover else None
    if isinstance(driver, ElbDriver):
        key, ref, members = "cutover.driver.listener_arn", driver.listener_arn, driver.target_groups
    elif isinstance(driver, Route53Driver):
        zone = driver.hosted_zone_id.rsplit("/", 1)[-1]
        key, ref = "cutover.driver.record_name", f"{zone} {driver.record_name.rstrip('.')}."
        members = driver.set_identifiers
    else:
        return []
    for candidate in discovery.candidates:
        if candidate.kind == driver.kind and candidate.ref == ref:
            if set(candidate.weights) == set(members.values()):
                return []
            field = "target_groups" if driver.kind == "elbv2" else "set_identifiers"
            return [
                Drift(
                    f"cutover.driver.{field}",
                    sorted(members.values()),
                    sorted(candidate.weights),
                    candidate.summary,
                )
            ]
    where = "weighted ALB listeners" if driver.kind == "elbv2" else "weighted Route 53 records"
    return [Drift(key, ref, ABSENT, f"not among the {where} of the account")]
