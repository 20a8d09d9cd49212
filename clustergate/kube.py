"""Connecting to the cluster, and turning client failures into one clear sentence.

Everything reaches the cluster through the official ``kubernetes`` client built here from a
kubeconfig, the same way for every target. Errors a person can fix (a wrong file, an unknown
context, an unreachable server, rejected credentials, a missing permission) become
:class:`ClusterAccessError` with what to do next; nothing else is swallowed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

#: The client's own retries stay off: a retried POST can create twice. Waits retry instead.
_NO_RETRIES = urllib3.Retry(total=0, connect=0, read=0, redirect=0, status=0)


class ClusterAccessError(Exception):
    """The cluster cannot be used as given; the message says why and what to check."""


@dataclass(frozen=True)
class Cluster:
    """A connected API client and where it points."""

    api: client.ApiClient
    server: str
    context: str
    kubeconfig: str

    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    def policy(self) -> client.PolicyV1Api:
        return client.PolicyV1Api(self.api)

    def coordination(self) -> client.CoordinationV1Api:
        return client.CoordinationV1Api(self.api)

    def authorization(self) -> client.AuthorizationV1Api:
        return client.AuthorizationV1Api(self.api)

    def version(self) -> client.VersionApi:
        return client.VersionApi(self.api)


def connect(kubeconfig: str | None, context: str | None, timeout_s: float = 15) -> Cluster:
    """Build a client from ``kubeconfig`` (or $KUBECONFIG / ~/.kube/config) and ``context``."""
    path = kubeconfig or _default_kubeconfig()
    if not Path(path).is_file():
        raise ClusterAccessError(
            f"kubeconfig {path} does not exist; pass --kubeconfig, set KUBECONFIG, or run "
            "`aws eks update-kubeconfig --name <cluster>`"
        )
    try:
        contexts, current = config.list_kube_config_contexts(config_file=path)
    except (ConfigException, OSError, ValueError) as error:
        raise ClusterAccessError(f"kubeconfig {path} cannot be read: {error}") from None
    names = [item["name"] for item in contexts]
    chosen = context or (current or {}).get("name")
    if chosen not in names:
        wanted = f"context {chosen!r}" if chosen else "a current context"
        raise ClusterAccessError(
            f"kubeconfig {path} has no {wanted}; its contexts are: {', '.join(names) or 'none'}"
        )
    configuration = client.Configuration()
    try:
        config.load_kube_config(
            config_file=path, context=chosen, client_configuration=configuration
        )
    except (ConfigException, OSError, ValueError) as error:
        raise ClusterAccessError(f"context {chosen!r} in {path} cannot be used: {error}") from None
    configuration.retries = _NO_RETRIES
    api = client.ApiClient(configuration)
    api.rest_client.pool_manager.connection_pool_kw["timeout"] = urllib3.Timeout(
        connect=timeout_s, read=max(timeout_s, 60)
    )
    return Cluster(api=api, server=configuration.host, context=chosen, kubeconfig=path)


def _default_kubeconfig() -> str:
    import os

    return os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or str(
        Path.home() / ".kube" / "config"
    )


def explain_api_error(error: BaseException, server: str, doing: str) -> str:
    """One sentence for a failed request: what was being done and why it failed."""
    if isinstance(error, ApiException):
        reason = _status_message(error)
        if error.status == 401:
            return (
                f"{server} rejected the credentials while {doing} (401 Unauthorized): the "
                "token is missing, expired or for another cluster; refresh the kubeconfig"
            )
        if error.status == 403:
            return f"{server} refused {doing} (403 Forbidden): {reason}"
        return f"{doing} failed at {server}: {error.status} {error.reason}: {reason}"
    if isinstance(error, urllib3.exceptions.MaxRetryError):
        error = error.reason or error
    if isinstance(error, urllib3.exceptions.SSLError):
        return f"TLS to {server} failed while {doing}: {error}; check the kubeconfig's CA data"
    if isinstance(error, (urllib3.exceptions.HTTPError, OSError)):
        return f"cannot reach the API server at {server} while {doing}: {_root_cause(error)}"
    return f"{doing} failed at {server}: {error}"


def _status_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "{}").get("message") or error.reason)
    except (ValueError, AttributeError):
        return str(error.reason)


def _root_cause(error: BaseException) -> str:
    text = str(error)
    for marker in ("Connection refused", "timed out", "Name or service not known"):
        if marker in text:
            return marker.lower()
    return text
