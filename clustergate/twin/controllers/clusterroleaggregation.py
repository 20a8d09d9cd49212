"""The ClusterRole aggregation controller (pkg/controller/clusterroleaggregation): a ClusterRole
with an ``aggregationRule`` gets, as its rules, the rules of every other ClusterRole that one of
its ``clusterRoleSelectors`` matches, in the order of their names, each rule once."""

from __future__ import annotations

from clustergate.twin.controllers.base import Controller, SharedInformers
from clustergate.twin.controllers.objects import Obj, labels_match
from clustergate.twin.kubeclient import KubeClient
from clustergate.twin.settings import TwinSettings

CLUSTER_ROLES = "/apis/rbac.authorization.k8s.io/v1/clusterroles"


def aggregated_rules(role: Obj, roles: list[Obj]) -> list[Obj]:
    selectors = (role.get("aggregationRule") or {}).get("clusterRoleSelectors") or []
    name = role["metadata"]["name"]
    rules: list[Obj] = []
    for other in sorted(roles, key=lambda r: r["metadata"]["name"]):
        if other["metadata"]["name"] == name:
            continue
        labels = other["metadata"].get("labels") or {}
        if any(labels_match(selector, labels) for selector in selectors):
            rules.extend(rule for rule in other.get("rules") or [] if rule not in rules)
    return rules


class ClusterRoleAggregationController(Controller):
    name = "clusterrole-aggregation-controller"

    def __init__(self, settings: TwinSettings, client: KubeClient, informers: SharedInformers):
        super().__init__(settings, client, informers)
        self.roles = informers.get(CLUSTER_ROLES)
        self.roles.add_handler(self._on_role)

    def keys(self) -> list[str]:
        return [r["metadata"]["name"] for r in self.roles.list() if r.get("aggregationRule")]

    def _on_role(self, kind: str, role: Obj, old: Obj | None) -> None:
        """Any ClusterRole's change may change what an aggregated one gathers."""
        for key in self.keys():
            self.queue.add(key)

    async def reconcile(self, key: str) -> None:
        role = self.roles.get(key)
        if role is None or not role.get("aggregationRule"):
            return
        rules = aggregated_rules(role, self.roles.list())
        if rules != (role.get("rules") or []):
            await self.client.replace(f"{CLUSTER_ROLES}/{key}", {**role, "rules": rules})
