"""Mutating admission on pod CREATE: the EKS pod identity webhook
(amazon-eks-pod-identity-webhook, see FACTS.md), configured with the cluster's region."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

ROLE_ARN = "eks.amazonaws.com/role-arn"
AUDIENCE = "eks.amazonaws.com/audience"
REGIONAL_STS = "eks.amazonaws.com/sts-regional-endpoints"
TOKEN_EXPIRATION = "eks.amazonaws.com/token-expiration"
SKIP_CONTAINERS = "eks.amazonaws.com/skip-containers"

VOLUME_NAME = "aws-iam-token"
MOUNT_PATH = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
TOKEN_FILE = f"{MOUNT_PATH}/token"
DEFAULT_AUDIENCE = "sts.amazonaws.com"
DEFAULT_EXPIRATION = 86400
MIN_EXPIRATION = 600


def _expiration(pod_annotations: dict[str, str], sa_annotations: dict[str, str]) -> int:
    for source in (pod_annotations, sa_annotations):
        raw = source.get(TOKEN_EXPIRATION)
        if raw is not None:
            try:
                return max(MIN_EXPIRATION, int(raw))
            except ValueError:
                continue
    return DEFAULT_EXPIRATION


def _mutate_container(container: Obj, role_arn: str, regional: bool, region: str) -> None:
    env: list[Obj] = container.setdefault("env", [])
    names = {item.get("name") for item in env}
    if regional and "AWS_STS_REGIONAL_ENDPOINTS" not in names:
        env.append({"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"})
    if region:
        for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
            if name not in names:
                env.append({"name": name, "value": region})
    if not names & {"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"}:
        env.append({"name": "AWS_ROLE_ARN", "value": role_arn})
        env.append({"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": TOKEN_FILE})
    mounts: list[Obj] = container.setdefault("volumeMounts", [])
    if not any(mount.get("mountPath") == MOUNT_PATH for mount in mounts):
        mounts.append({"name": VOLUME_NAME, "readOnly": True, "mountPath": MOUNT_PATH})


def mutate_pod(pod: Obj, service_account: Obj | None, region: str) -> bool:
    """Apply the webhook's mutation to ``pod`` in place; say whether it applied."""
    sa_annotations = ((service_account or {}).get("metadata") or {}).get("annotations") or {}
    role_arn = sa_annotations.get(ROLE_ARN)
    if not role_arn:
        return False
    pod_annotations = pod["metadata"].get("annotations") or {}
    skipped = {
        name.strip() for name in pod_annotations.get(SKIP_CONTAINERS, "").split(",") if name.strip()
    }
    regional = sa_annotations.get(REGIONAL_STS) == "true"
    spec = pod["spec"]
    for field in ("initContainers", "containers"):
        for container in spec.get(field) or []:
            if container.get("name") not in skipped:
                _mutate_container(container, role_arn, regional, region)
    volumes: list[Obj] = spec.setdefault("volumes", [])
    if not any(volume.get("name") == VOLUME_NAME for volume in volumes):
        token = {
            "audience": sa_annotations.get(AUDIENCE) or DEFAULT_AUDIENCE,
            "expirationSeconds": _expiration(pod_annotations, sa_annotations),
            "path": "token",
        }
        volumes.append(
            {
                "name": VOLUME_NAME,
                "projected": {"sources": [{"serviceAccountToken": token}], "defaultMode": 420},
            }
        )
    return True
