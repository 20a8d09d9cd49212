"""The pod identity webhook's mutation of a pod (amazon-eks-pod-identity-webhook, see
FACTS.md), as its flags configure it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

VOLUME_NAME = "aws-iam-token"
MIN_EXPIRATION = 600


@dataclass(frozen=True)
class Flags:
    """The webhook's command-line flags that shape its mutation, with upstream's defaults."""

    #: --aws-default-region: AWS_REGION/AWS_DEFAULT_REGION are injected only when set.
    aws_default_region: str = ""
    #: --annotation-prefix
    annotation_prefix: str = "eks.amazonaws.com"
    #: --token-audience
    token_audience: str = "sts.amazonaws.com"
    #: --token-expiration (seconds)
    token_expiration: int = 86400
    #: --token-mount-path
    token_mount_path: str = "/var/run/secrets/eks.amazonaws.com/serviceaccount"

    def annotation(self, name: str) -> str:
        return f"{self.annotation_prefix}/{name}"

    @property
    def token_file(self) -> str:
        return f"{self.token_mount_path}/token"


def _expiration(
    pod_annotations: dict[str, str], sa_annotations: dict[str, str], flags: Flags
) -> int:
    for source in (pod_annotations, sa_annotations):
        raw = source.get(flags.annotation("token-expiration"))
        if raw is not None:
            try:
                return max(MIN_EXPIRATION, int(raw))
            except ValueError:
                continue
    return flags.token_expiration


def _mutate_container(container: Obj, role_arn: str, regional: bool, flags: Flags) -> None:
    env: list[Obj] = container.setdefault("env", [])
    names = {item.get("name") for item in env}
    if regional and "AWS_STS_REGIONAL_ENDPOINTS" not in names:
        env.append({"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"})
    region = flags.aws_default_region
    if region:
        for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
            if name not in names:
                env.append({"name": name, "value": region})
    if not names & {"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"}:
        env.append({"name": "AWS_ROLE_ARN", "value": role_arn})
        env.append({"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": flags.token_file})
    mounts: list[Obj] = container.setdefault("volumeMounts", [])
    mount_path = flags.token_mount_path
    if not any(mount.get("mountPath") == mount_path for mount in mounts):
        mounts.append({"name": VOLUME_NAME, "readOnly": True, "mountPath": mount_path})


def mutate_pod(pod: Obj, service_account: Obj | None, flags: Flags) -> bool:
    """Apply the webhook's mutation to ``pod`` in place; say whether it applied."""
    sa_annotations = ((service_account or {}).get("metadata") or {}).get("annotations") or {}
    role_arn = sa_annotations.get(flags.annotation("role-arn"))
    if not role_arn:
        return False
    pod_annotations = pod["metadata"].get("annotations") or {}
    listed = pod_annotations.get(flags.annotation("skip-containers"), "")
    skipped = {name.strip() for name in listed.split(",") if name.strip()}
    regional = sa_annotations.get(flags.annotation("sts-regional-endpoints")) == "true"
    spec = pod["spec"]
    for field in ("initContainers", "containers"):
        for container in spec.get(field) or []:
            if container.get("name") not in skipped:
                _mutate_container(container, role_arn, regional, flags)
    volumes: list[Obj] = spec.setdefault("volumes", [])
    if not any(volume.get("name") == VOLUME_NAME for volume in volumes):
        token = {
            "audience": sa_annotations.get(flags.annotation("audience")) or flags.token_audience,
            "expirationSeconds": _expiration(pod_annotations, sa_annotations, flags),
            "path": "token",
        }
        volumes.append(
            {
                "name": VOLUME_NAME,
                "projected": {"sources": [{"serviceAccountToken": token}], "defaultMode": 420},
            }
        )
    return True
