"""EKS-optimized AMI release names, shaped like the real ones.

A managed node group reports ``releaseVersion`` ``<k8s patch>-<build date>`` (1.31.2-20241106)
and its nodes' kubelets report ``v<k8s patch>-eks-<build hash>`` (v1.31.2-eks-7f9249a).
"""

from __future__ import annotations

import hashlib
import re

#: Kubernetes minor -> the patch release the twin's AMI ships (amazon-eks-ami, late 2024).
KUBELET_PATCHES: dict[str, str] = {
    "1.28": "1.28.15",
    "1.29": "1.29.10",
    "1.30": "1.30.6",
    "1.31": "1.31.2",
    "1.32": "1.32.0",
    "1.33": "1.33.0",
}
DEFAULT_BUILD_DATE = "20241106"
_RELEASE = re.compile(r"(?P<minor>\d+\.\d+)\.\d+-\d{8}")
_MINOR = re.compile(r"\d+\.\d+")


def release_version(kubernetes_version: str, build_date: str = DEFAULT_BUILD_DATE) -> str:
    """``1.31`` -> ``1.31.2-20241106``."""
    patch = KUBELET_PATCHES.get(kubernetes_version, f"{kubernetes_version}.0")
    return f"{patch}-{build_date}"


def kubelet_version(release: str) -> str:
    """``1.31.2-20241106`` -> ``v1.31.2-eks-<7 hex digits>``; the hash is derived from the
    release so that one release always reports one kubelet build."""
    patch = release.split("-", 1)[0]
    build = hashlib.sha1(release.encode()).hexdigest()[:7]
    return f"v{patch}-eks-{build}"


def is_release(text: str) -> bool:
    return _RELEASE.fullmatch(text) is not None


def is_minor(text: str) -> bool:
    return _MINOR.fullmatch(text) is not None


def kubernetes_minor(release: str) -> str:
    """``1.31.2-20241106`` -> ``1.31``."""
    match = _RELEASE.fullmatch(release)
    if match is None:
        raise ValueError(f"{release!r} is not an AMI release version like 1.31.2-20241106")
    return match["minor"]


def minor_key(minor: str) -> tuple[int, int]:
    """``1.31`` -> ``(1, 31)``, to compare versions."""
    major, _, rest = minor.partition(".")
    return int(major), int(rest)
