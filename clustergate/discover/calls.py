"""Requests to the API server and AWS, each failure one sentence naming verb and resource."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from clustergate.kube import Cluster, explain_api_error

DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})
#: Answers meaning the endpoint does not offer the operation (an older API, or a stand-in).
UNSUPPORTED_CODES = frozenset({"InvalidAction", "UnknownOperationException", "NotImplemented"})


class DiscoveryError(Exception):
    """Discovery cannot go on; the message says what was asked and why it failed."""


class Unsupported(DiscoveryError):
    """The endpoint does not offer this operation; discovery notes it and goes on."""


def kube(cluster: Cluster, doing: str, call: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """``doing`` is the verb and resource, e.g. "list serviceaccounts in all namespaces"."""
    try:
        return call(*args, _request_timeout=30, **kw)
    except Exception as error:
        raise DiscoveryError(explain_api_error(error, cluster.server, doing)) from None


def aws(client: Any, operation: str, **params: Any) -> dict[str, Any]:
    """Call ``operation`` (the boto3 method name) and name the IAM action when it fails."""
    with _explained(client, operation):
        return dict(getattr(client, operation)(**params))


def aws_pages(client: Any, operation: str, key: str, **params: Any) -> list[Any]:
    """Every item under ``key`` of every page of ``operation``, through boto3's paginator."""
    with _explained(client, operation):
        pages = client.get_paginator(operation).paginate(**params)
        return [item for page in pages for item in page.get(key) or []]


@contextmanager
def _explained(client: Any, operation: str) -> Iterator[None]:
    service = client.meta.service_model.signing_name or client.meta.service_model.service_name
    action = f"{service}:{client.meta.method_to_api_mapping.get(operation, operation)}"
    try:
        yield
    except NoCredentialsError:
        raise DiscoveryError(
            f"no AWS credentials for {action}: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or run where an instance or web-identity role applies"
        ) from None
    except NoRegionError:
        raise DiscoveryError(
            f"no AWS region for {action}: set AWS_REGION or the profile's region"
        ) from None
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "?")
        message = error.response.get("Error", {}).get("Message", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in UNSUPPORTED_CODES or (status == 404 and code in ("404", "NotFound", "?")):
            raise Unsupported(f"{action} is not offered by this endpoint ({code})") from None
        if code in DENIED_CODES:
            raise DiscoveryError(
                f"AWS refused {action} ({code}): {message}; grant it to this identity "
                "(docs/getting-started.md lists what init reads)"
            ) from None
        raise DiscoveryError(f"AWS {action} failed ({code}): {message}") from None
    except BotoCoreError as error:
        raise DiscoveryError(f"AWS {action} failed: {error}") from None
