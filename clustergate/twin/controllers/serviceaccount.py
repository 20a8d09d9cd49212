"""The service-account controller and the root-CA publisher: every active namespace gets a
"default" ServiceAccount and the kube-root-ca.crt ConfigMap, as kube-controller-manager does."""

from __future__ import annotations

from pathlib import Path

from clustergate.twin.controllers.base import Controller, SharedInformers
from clustergate.twin.controllers.objects import Obj, is_terminating
from clustergate.twin.kubeclient import ApiError, KubeClient, resource_path
from clustergate.twin.settings import TwinSettings

ROOT_CA_CONFIGMAP = "kube-root-ca.crt"


class ServiceAccountController(Controller):
    name = "serviceaccount-controller"

    def __init__(self, settings: TwinSettings, client: KubeClient, informers: SharedInformers):
        super().__init__(settings, client, informers)
        self.namespaces = informers.get("/api/v1/namespaces")
        self.accounts = informers.get("/api/v1/serviceaccounts")
        self.configmaps = informers.get(
            "/api/v1/configmaps", field_selector=f"metadata.name={ROOT_CA_CONFIGMAP}"
        )
        self.root_ca = Path(client.ca_pem_path).read_text()
        self.namespaces.add_handler(self._on_namespace)
        self.accounts.add_handler(self._on_namespaced)
        self.configmaps.add_handler(self._on_namespaced)

    def keys(self) -> list[str]:
        return [ns["metadata"]["name"] for ns in self.namespaces.list()]

    def _on_namespace(self, kind: str, ns: Obj, old: Obj | None) -> None:
        if kind != "DELETED":
            self.queue.add(ns["metadata"]["name"])

    def _on_namespaced(self, kind: str, obj: Obj, old: Obj | None) -> None:
        if kind == "DELETED":
            self.queue.add(obj["metadata"]["namespace"])

    async def reconcile(self, key: str) -> None:
        ns = self.namespaces.get(key)
        if ns is None or is_terminating(ns):
            return
        if self.accounts.get(f"{key}/default") is None:
            await self._create(
                resource_path("v1", "serviceaccounts", key),
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}},
            )
        configmap = self.configmaps.get(f"{key}/{ROOT_CA_CONFIGMAP}")
        if configmap is None:
            await self._create(
                resource_path("v1", "configmaps", key),
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {
                        "name": ROOT_CA_CONFIGMAP,
                        "annotations": {
                            "kubernetes.io/description": (
                                "Contains a CA bundle that can be used to verify the "
                                "kube-apiserver when using internal endpoints such as the "
                                "internal service IP or kubernetes.default.svc. No other usage "
                                "is guaranteed across distributions of Kubernetes clusters."
                            )
                        },
                    },
                    "data": {"ca.crt": self.root_ca},
                },
            )

    async def _create(self, path: str, body: Obj) -> None:
        try:
            await self.client.create(path, body)
        except ApiError as error:
            if error.status not in (409, 403):  # exists, or the namespace is terminating
                raise
