"""EKS managed node-group updates: start one (or find one started elsewhere) and follow it.

``update_nodegroup_version`` takes a Kubernetes ``version`` or an AMI ``releaseVersion``. Given
neither, the check re-applies the node group's current release, which makes EKS roll every node
(new launch template version) without changing what runs on it: the upgrade machinery is
exercised without upgrading anything. ``describe_update`` is then polled until the update is
Successful, Failed or Cancelled; its ``errors`` carry AWS's code, message and the instance or
node ids involved (``PodEvictionFailure``, ``NodeCreationFailure``, ...).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from clustergate.nodes import patch_of
from clustergate.wait import poll_until

log = logging.getLogger("clustergate.eks_upgrade")

TERMINAL = ("Successful", "Failed", "Cancelled")
_POLL_S = 3.0


@dataclass(frozen=True)
class Target:
    """What the update asks for; exactly one of the two is set."""

    version: str | None
    release_version: str | None
    #: True when the check re-applies the current release only to roll the nodes.
    reapplied: bool = False

    def describe(self) -> str:
        if self.reapplied:
            return f"release {self.release_version} re-applied (same AMI, forces a node roll)"
        if self.version:
            return f"Kubernetes {self.version}"
        return f"release {self.release_version}"

    def kubelet_matches(self, kubelet: str) -> bool:
        """Whether a node's kubelet version is what this target puts on the nodes: the same
        minor for a version, the release's patch (1.31.2-20241106 -> v1.31.2) for a release."""
        if self.version:
            return kubelet.lstrip("v").startswith(f"{self.version}.")
        return patch_of(kubelet) == patch_of(str(self.release_version))


def describe_nodegroup(eks: Any, cluster: str, nodegroup: str) -> dict[str, Any]:
    return dict(eks.describe_nodegroup(clusterName=cluster, nodegroupName=nodegroup)["nodegroup"])


def start_update(
    eks: Any, cluster: str, nodegroup: str, version: str | None, release_version: str | None
) -> tuple[str, Target]:
    """Call update_nodegroup_version; return the update id and what was asked for."""
    if version and release_version:
        raise ValueError("set upgrade.version or upgrade.release_version, not both")
    target = Target(version, release_version)
    if not (version or release_version):
        current = describe_nodegroup(eks, cluster, nodegroup).get("releaseVersion")
        if not current:
            raise AssertionError(
                f"node group {nodegroup} reports no releaseVersion (a custom AMI?); set "
                "upgrade.version or upgrade.release_version in the cluster config"
            )
        target = Target(None, current, reapplied=True)
    arguments: dict[str, Any] = {"clusterName": cluster, "nodegroupName": nodegroup}
    if target.version:
        arguments["version"] = target.version
    else:
        arguments["releaseVersion"] = target.release_version
    update = eks.update_nodegroup_version(**arguments)["update"]
    log.info("started update %s of node group %s: %s", update["id"], nodegroup, target.describe())
    return str(update["id"]), target


def find_update_in_progress(eks: Any, cluster: str, nodegroup: str) -> dict[str, Any] | None:
    """The node group's update that is InProgress, if any (for ``--observe-upgrade``)."""
    ids = eks.list_updates(name=cluster, nodegroupName=nodegroup).get("updateIds", [])
    for update_id in reversed(ids):
        update = describe_update(eks, cluster, nodegroup, update_id)
        if update["status"] == "InProgress":
            return update
    return None


def target_of(update: dict[str, Any]) -> Target:
    """What an update found in progress asks for, from its params."""
    params = {p.get("type"): p.get("value") for p in update.get("params") or []}
    return Target(params.get("Version"), params.get("ReleaseVersion"))


def describe_update(eks: Any, cluster: str, nodegroup: str, update_id: str) -> dict[str, Any]:
    return dict(
        eks.describe_update(name=cluster, updateId=update_id, nodegroupName=nodegroup)["update"]
    )


def describe_errors(update: dict[str, Any]) -> str:
    """AWS's errors of an update, each with its code, message and resource ids."""
    lines = []
    for error in update.get("errors") or []:
        ids = ", ".join(error.get("resourceIds") or []) or "no resource ids"
        lines.append(f"{error.get('errorCode')}: {error.get('errorMessage')} ({ids})")
    return "; ".join(lines) or "no errors reported"


def replaced(old: set[str], now: Iterable[str]) -> str:
    """How far a roll has got: ``3/6 nodes replaced`` (old nodes no longer in the group)."""
    return f"{len(old - set(now))}/{len(old)} nodes replaced"


def follow_update(
    eks: Any,
    cluster: str,
    nodegroup: str,
    update_id: str,
    timeout_s: float,
    nodes_now: Callable[[], str] | None = None,
) -> dict[str, Any]:
    """Poll describe_update until the update ends (any terminal status) or the deadline.
    ``nodes_now`` says how far the roll has got, for the wait's progress lines."""

    def describe(update: dict[str, Any]) -> str:
        nodes = f"{nodes_now()}; " if nodes_now else ""
        return f"{nodes}status {update['status']}; {describe_errors(update)}"

    return poll_until(
        lambda: describe_update(eks, cluster, nodegroup, update_id),
        lambda update: update["status"] in TERMINAL,
        what=f"node group {nodegroup} update {update_id} to end",
        timeout_s=timeout_s,
        describe=describe,
        interval_s=_POLL_S,
        progress_every_s=30,
    )
