"""The EKS-optimized AMIs of the twin's account: one image registered in moto per AMI release.

Instances report their image (the launch template version's ``ImageId``); the catalog says
which release that image is, so a node booted from it runs that release's kubelet.
"""

from __future__ import annotations

import threading

from clustergate.twin.aws.moto_clients import MotoClients
from clustergate.twin.aws.releases import kubernetes_minor


class ImageCatalog:
    """Release <-> AMI id. :meth:`register` is blocking (it calls moto): run it in a thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_release: dict[str, str] = {}
        self._by_ami: dict[str, str] = {}

    def register(self, moto: MotoClients, release: str) -> str:
        """The AMI id of ``release`` (``1.31.2-20241106``), registering the image on first use
        under the name the EKS-optimized AMI has (``amazon-eks-node-1.31-v20241106``)."""
        with self._lock:
            if release in self._by_release:
                return self._by_release[release]
            minor = kubernetes_minor(release)
            ami_id = moto.ec2.register_image(
                Name=f"amazon-eks-node-{minor}-v{release.rsplit('-', 1)[1]}",
                Description=f"EKS Kubernetes Worker AMI with AmazonLinux2 image, (k8s: {release})",
            )["ImageId"]
            self._by_release[release] = ami_id
            self._by_ami[ami_id] = release
            return ami_id

    def release_of(self, ami_id: str) -> str | None:
        with self._lock:
            return self._by_ami.get(ami_id)
