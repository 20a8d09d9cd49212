"""Connecting to the cluster, and turning client failures into one clear sentence.

Everything reaches the cluster through the official ``kubernetes`` client built here from a
kubeconfig, the same way for every target. Errors a person can fix (a wrong file, an unknown
context, an unreachable server, rejected credentials, a missing permission) become
:class:`ClusterAccessError` with what to do next; nothing else is swallowed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from clustergate import input_errors
from clustergate.input_errors import InputError

#: Objects per page of a cluster-wide list, as kubectl and client-go's pager ask for.
PAGE_SIZE = 500

#: Statuses that say "not now" rather than "no": etcd leader changes and overloaded or
#: restarting API servers answer 500/502/503/504. A 429 is retried only with a Retry-After.
TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})


class ApiRetry(urllib3.Retry):
    """The one retry policy for every request to the API server (issue 12).

    - Connection failures before the request was sent (refused, TLS or connect timeout): every
      verb, since nothing reached the server. Few and fast, so an API server that is really down
      still fails within about a second (``connect=2``).
    - 429 with Retry-After (API Priority and Fairness rejects before the request runs, so even a
      POST is safe to send again): every verb, after the time the server asks for. A 429
      without Retry-After is an answer, not load shedding (an eviction refused by a
      PodDisruptionBudget): it reaches the caller at once.
    - 500/502/503/504 and a connection dropped after the request was sent: every verb too. GET,
      PUT (with resourceVersion a replayed PUT gets 409, never a silent double write), DELETE (a
      replay of a delete that went through gets 404) and the merge PATCHes the library sends
      (absolute values, so applying one twice equals applying it once) are idempotent; a POST
      here creates a named object (the library never uses generateName), asks for an eviction
      or a token, or reviews access: a replay of a create that did go through answers 409
      AlreadyExists instead of creating twice; an eviction or a review is idempotent.
    - A read timeout is not retried: a hung server would otherwise cost several read timeouts.
    Backoff doubles from 0.25 s up to 4 s with jitter; when the retries are used up the last
    answer is returned as it is (an ApiException with its status), never a MaxRetryError.
    """

    def _is_read_error(self, err: Exception) -> bool:
        return isinstance(err, urllib3.exceptions.ProtocolError)


def api_retry() -> ApiRetry:
    return ApiRetry(
        total=6,
        connect=2,
        read=4,
        status=5,
        other=0,
        redirect=0,
        allowed_methods=None,
        status_forcelist=TRANSIENT_STATUSES,
        backoff_factor=0.125,
        backoff_max=4.0,
        backoff_jitter=0.1,
        respect_retry_after_header=True,
        raise_on_status=False,
    )


class ClusterAccessError(InputError):
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
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ClusterAccessError(input_errors.unreadable_kubeconfig(path, error)) from None
    try:
        data = input_errors.kubeconfig_document(path, text)
        chosen = input_errors.chosen_context(path, data, context)
    except InputError as error:
        raise ClusterAccessError(str(error)) from None
    configuration = client.Configuration()
    exec_failures = _ClientErrors()
    root = logging.getLogger()
    root.addFilter(exec_failures)
    try:
        config.load_kube_config(
            config_file=path, context=chosen, client_configuration=configuration
        )
    except (ConfigException, OSError, ValueError, TypeError, KeyError) as error:
        raise ClusterAccessError(input_errors.unusable_context(path, data, chosen, error)) from None
    finally:
        root.removeFilter(exec_failures)
    if exec_failures.messages:
        raise ClusterAccessError(
            input_errors.failed_exec_plugin(path, data, chosen, exec_failures.messages[0])
        )
    configuration.retries = api_retry()
    api = client.ApiClient(configuration)
    api.rest_client.pool_manager.connection_pool_kw["timeout"] = urllib3.Timeout(
        connect=timeout_s, read=max(timeout_s, 60)
    )
    return Cluster(api=api, server=configuration.host, context=chosen, kubeconfig=path)


class _ClientErrors(logging.Filter):
    """The errors the kubernetes client logs instead of raising while it loads a kubeconfig
    (a failed exec credential plugin): kept to be raised, not printed."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.module == "kube_config" and record.levelno >= logging.ERROR:
            self.messages.append(record.getMessage())
            return False
        return True


def list_all(list_fn: Callable[..., Any], page_size: int = PAGE_SIZE, **kwargs: Any) -> list[Any]:
    """Every object of a list call (``core.list_pod_for_all_namespaces``), in pages.

    A 10,000-pod cluster is then 20 answers of 500 pods rather than one of tens of megabytes
    that the API server must build at once. When the continue token expires mid-way (410),
    the whole list is read again unpaged, as client-go's pager falls back.
    """
    items: list[Any] = []
    token = None
    while True:
        try:
            page = list_fn(limit=page_size, _continue=token, **kwargs)
        except ApiException as error:
            if error.status != 410 or token is None:
                raise
            return list(list_fn(**kwargs).items)
        items.extend(page.items)
        token = page.metadata._continue
        if not token:
            return items


def _default_kubeconfig() -> str:
    import os

    return os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or str(
        Path.home() / ".kube" / "config"
    )


def explain_api_error(error: BaseException, server: str, doing: str) -> str:
    """One sentence for a failed request: what was being done and why it failed."""
    if isinstance(error, ApiException):
        reason = input_errors.status_message(error)
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
        cause = input_errors.root_cause(error)
        return f"cannot reach the API server at {server} while {doing}: {cause}"
    return f"{doing} failed at {server}: {error}"
