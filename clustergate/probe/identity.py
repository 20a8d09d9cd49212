"""What a pod's AWS identity is: injected env, its web identity token, what it may assume.

The token itself is never printed: only its decoded claims, which carry no secret.
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

import boto3
from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from clustergate.probe import sandbox

TOKEN_ENV = "AWS_WEB_IDENTITY_TOKEN_FILE"
_REPORTED_ENV = (
    "AWS_ROLE_ARN",
    TOKEN_ENV,
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_STS_REGIONAL_ENDPOINTS",
    "AWS_ACCESS_KEY_ID",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)
_SECRET_WORDS = ("SECRET", "SESSION_TOKEN", "ACCESS_KEY_ID")
_IMDS = "169.254.169.254"


def _region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def _client(service: str, region: str | None = None, **credentials: str) -> Any:
    """A boto3 client for the endpoint botocore picks (regional or global), or where the
    sandbox maps that endpoint when the probe runs in the twin."""
    region = region or _region()
    config = Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=10)
    client = boto3.client(service, region_name=region, config=config, **credentials)
    mapped = sandbox.url(client.meta.endpoint_url)
    if mapped == client.meta.endpoint_url:
        return client
    return boto3.client(
        service, region_name=region, endpoint_url=mapped, config=config, **credentials
    )


def env() -> dict[str, Any]:
    """The AWS variables the pod sees (values of secret ones replaced by 'set')."""
    seen = {}
    for name in _REPORTED_ENV:
        if name in os.environ:
            secret = any(word in name for word in _SECRET_WORDS)
            seen[name] = "set" if secret else os.environ[name]
    token_file = os.environ.get(TOKEN_ENV)
    mounted = bool(token_file) and sandbox.path(token_file).is_file()
    return {"ok": True, "env": seen, "token_file_present": mounted}


def _read_token() -> str:
    token_file = os.environ.get(TOKEN_ENV)
    if not token_file:
        raise LookupError(f"{TOKEN_ENV} is not set: the pod identity webhook did not mutate it")
    return sandbox.path(token_file).read_text().strip()


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def token() -> dict[str, Any]:
    try:
        claims = _claims(_read_token())
    except (LookupError, OSError, ValueError, IndexError) as error:
        return {"ok": False, "error": str(error)}
    return {"ok": True, "claims": claims, "now": int(time.time())}


def assume(role_arn: str | None, calls: list[str]) -> dict[str, Any]:
    """AssumeRoleWithWebIdentity with the pod's own token, then GetCallerIdentity and calls."""
    role_arn = role_arn or os.environ.get("AWS_ROLE_ARN")
    if not role_arn:
        return {"ok": False, "error": "no role given and AWS_ROLE_ARN is not set"}
    started = time.monotonic()
    try:
        answer = _client("sts").assume_role_with_web_identity(
            RoleArn=role_arn, RoleSessionName="clustergate-probe", WebIdentityToken=_read_token()
        )
    except (LookupError, OSError) as error:
        return {"ok": False, "role_arn": role_arn, "error": str(error)}
    except ClientError as error:
        details = error.response.get("Error", {})
        return {
            "ok": False,
            "role_arn": role_arn,
            "operation": "sts:AssumeRoleWithWebIdentity",
            "error_code": details.get("Code"),
            "error_message": details.get("Message"),
            "http_status": error.response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
            "request_id": error.response.get("ResponseMetadata", {}).get("RequestId"),
        }
    seconds = time.monotonic() - started
    credentials = answer["Credentials"]
    keys = {
        "aws_access_key_id": credentials["AccessKeyId"],
        "aws_secret_access_key": credentials["SecretAccessKey"],
        "aws_session_token": credentials["SessionToken"],
    }
    caller = _client("sts", **keys).get_caller_identity()["Arn"]
    return {
        "ok": True,
        "role_arn": role_arn,
        "caller_arn": caller,
        "seconds_to_credentials": seconds,
        "calls": [_call(spec, keys) for spec in calls],
    }


def web_identity(try_roles: list[str], calls: list[str]) -> dict[str, Any]:
    """Everything the IRSA checks ask of one pod: the injected env and token claims, the
    pod's own role (from AWS_ROLE_ARN, with ``calls``), and an attempt at each of
    ``try_roles`` with the pod's own token."""
    seen = env()
    claims = token()
    return {
        "ok": True,
        "env": seen["env"],
        "token_file_present": seen["token_file_present"],
        "claims": claims.get("claims"),
        "token_error": claims.get("error"),
        "now": int(time.time()),
        "assume": assume(None, calls),
        "tried": [assume(role_arn, []) for role_arn in try_roles],
    }


def _call(spec: str, keys: dict[str, str]) -> dict[str, Any]:
    """``service:Operation:{"json":"params"}`` made with the assumed credentials."""
    service, operation, params = ([*spec.split(":", 2), "{}"])[:3]
    name = f"{service}:{operation}"
    try:
        getattr(_client(service, **keys), xform_name(operation))(**json.loads(params))
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code")
        request_id = error.response.get("ResponseMetadata", {}).get("RequestId")
        return {
            "call": name,
            "allowed": code not in _DENIED,
            "code": code,
            "request_id": request_id,
        }
    except (BotoCoreError, ValueError, TypeError, AttributeError) as error:
        # No answer from AWS (unreachable endpoint, unknown operation, bad parameters): the
        # call proves nothing either way.
        return {
            "call": name,
            "allowed": None,
            "code": None,
            "error": f"{type(error).__name__}: {error}",
        }
    return {"call": name, "allowed": True, "code": None}


_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Forbidden"}


def default_credentials(region: str | None = None) -> dict[str, Any]:
    """What the default credential chain gives this pod, and whose identity that is.
    ``region`` is where to ask STS who the credentials are (a pod without a role has no
    region in its environment)."""
    region = region or _region()
    host, port = sandbox.dial(_IMDS, 80)
    if (host, port) != (_IMDS, 80):
        os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = f"http://{host}:{port}"
    os.environ.setdefault("AWS_METADATA_SERVICE_TIMEOUT", "2")
    session = boto3.Session(region_name=region)
    try:
        credentials = session.get_credentials()
    except (BotoCoreError, ClientError) as error:
        return {"ok": True, "credentials": False, "error": str(error)}
    if credentials is None:
        return {"ok": True, "credentials": False, "source": None}
    try:
        keys = {
            "aws_access_key_id": credentials.access_key,
            "aws_secret_access_key": credentials.secret_key,
            "aws_session_token": credentials.token,
        }
        caller = _client("sts", region, **keys).get_caller_identity()["Arn"]
    except (NoCredentialsError, ClientError, BotoCoreError) as error:
        caller = f"unresolved: {error}"
    return {"ok": True, "credentials": True, "source": credentials.method, "caller_arn": caller}


def imds(timeout_s: float) -> dict[str, Any]:
    """Try IMDSv2 as a container would: token PUT, then the role credentials listing."""
    host, port = sandbox.dial(_IMDS, 80)
    base = f"http://{host}:{port}/latest"
    put = urllib.request.Request(
        f"{base}/api/token",
        method="PUT",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
    )
    try:
        with urllib.request.urlopen(put, timeout=timeout_s) as response:
            imds_token = response.read().decode()
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        return {"ok": True, "token": False, "reachable_credentials": False, "error": str(error)}
    listing = urllib.request.Request(
        f"{base}/meta-data/iam/security-credentials/",
        headers={"X-aws-ec2-metadata-token": imds_token},
    )
    try:
        with urllib.request.urlopen(listing, timeout=timeout_s) as response:
            roles = response.read().decode().split()
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        return {"ok": True, "token": True, "reachable_credentials": False, "error": str(error)}
    return {"ok": True, "token": True, "reachable_credentials": bool(roles), "roles": roles}
