"""The EKS pod identity webhook (amazon-eks-pod-identity-webhook) as EKS runs it.

On EKS the webhook runs on the control plane beside kube-apiserver and serves ``/mutate`` over
HTTPS at ``127.0.0.1:23443``; the MutatingWebhookConfiguration ``pod-identity-webhook`` in the
cluster registers it (webhook ``iam-for-pods.amazonaws.com``, pods on CREATE, failurePolicy
Ignore). The API server calls it like any other webhook, so an operator who deletes or breaks
that configuration with kubectl stops the IRSA injection, silently, as on EKS.

The twin's webhook listens on a port of its own and publishes it in the netmap as
``127.0.0.1:23443``, the address the API server dials on a control-plane node. As upstream it
reads each pod's ServiceAccount from an informer's cache, asks the API server on a miss (an
account created just before its pod), and answers the mutation of :mod:`.mutation` as a
JSONPatch.
"""

from __future__ import annotations

import base64
import copy
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonpatch
import orjson
from aiohttp import web

from clustergate.twin.apiserver.tls import issue_serving_files
from clustergate.twin.kubeclient import Informer, KubeClient, resource_path
from clustergate.twin.netmap import Netmap
from clustergate.twin.pod_identity_webhook.mutation import Flags, mutate_pod

log = logging.getLogger(__name__)
Obj = dict[str, Any]

CONFIGURATION = "pod-identity-webhook"
WEBHOOK = "iam-for-pods.amazonaws.com"
#: Where kube-apiserver reaches the webhook on an EKS control-plane node.
ADDRESS, PORT = "127.0.0.1", 23443
SKIP_LABEL = "eks.amazonaws.com/skip-pod-identity-webhook"


def configuration(ca_pem: bytes) -> Obj:
    """The MutatingWebhookConfiguration EKS installs for the webhook."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": CONFIGURATION},
        "webhooks": [
            {
                "name": WEBHOOK,
                "admissionReviewVersions": ["v1beta1"],
                "clientConfig": {
                    "url": f"https://{ADDRESS}:{PORT}/mutate",
                    "caBundle": base64.b64encode(ca_pem).decode(),
                },
                "failurePolicy": "Ignore",
                "matchPolicy": "Equivalent",
                "namespaceSelector": {},
                "objectSelector": {
                    "matchExpressions": [{"key": SKIP_LABEL, "operator": "DoesNotExist"}]
                },
                "reinvocationPolicy": "IfNeeded",
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                        "scope": "*",
                    }
                ],
                "sideEffects": "None",
                "timeoutSeconds": 10,
            }
        ],
    }


class PodIdentityWebhook:
    def __init__(
        self,
        state_dir: Path,
        netmap: Netmap,
        client: Callable[[], KubeClient],
        flags: Flags,
    ) -> None:
        self.directory = state_dir / "pod-identity-webhook"
        self.netmap = netmap
        self.flags = flags
        self._client_factory = client
        self._client: KubeClient | None = None
        self._accounts: Informer | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.ca_pem = b""

    async def start(self) -> None:
        files = issue_serving_files(
            self.directory, [], [ADDRESS], subject="pod-identity-webhook", stem="webhook"
        )
        self.ca_pem = files.ca_cert.read_bytes()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        app = web.Application()
        app.router.add_post("/mutate", self._mutate)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock, ssl_context=files.ssl_context()).start()
        self._client = self._client_factory()
        self._accounts = Informer(self._client, "/api/v1/serviceaccounts")
        self._accounts.start()
        await self._accounts.synced()
        self.netmap.publish(ADDRESS, PORT, ("127.0.0.1", self.port))

    async def register(self, client: KubeClient) -> None:
        """Create the MutatingWebhookConfiguration, as EKS does when it creates the cluster."""
        path = resource_path("admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations")
        await client.create(path, configuration(self.ca_pem))

    async def stop(self) -> None:
        self.netmap.withdraw(ADDRESS, PORT)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._accounts is not None:
            await self._accounts.stop()
            self._accounts = None
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _mutate(self, request: web.Request) -> web.Response:
        review = orjson.loads(await request.read())
        asked = review.get("request") or {}
        response: Obj = {"uid": asked.get("uid", ""), "allowed": True}
        pod = asked.get("object")
        if isinstance(pod, dict) and self._client is not None and self._accounts is not None:
            namespace = asked.get("namespace") or ""
            account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
            service_account = self._accounts.get(f"{namespace}/{account}")
            if service_account is None:
                path = resource_path("v1", "serviceaccounts", namespace, account)
                service_account = await self._client.get_or_none(path)
            mutated = copy.deepcopy(pod)
            if mutate_pod(mutated, service_account, self.flags):
                patch = jsonpatch.make_patch(pod, mutated).patch
                response["patchType"] = "JSONPatch"
                response["patch"] = base64.b64encode(orjson.dumps(patch)).decode()
        answer = {
            "apiVersion": review.get("apiVersion", "admission.k8s.io/v1"),
            "kind": "AdmissionReview",
            "response": response,
        }
        return web.Response(body=orjson.dumps(answer), content_type="application/json")
