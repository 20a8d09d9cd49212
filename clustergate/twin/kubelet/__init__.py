"""The twin's kubelets: one per node, each an API client of the twin's API server."""

from clustergate.twin.kubelet.kubelet import Kubelet
from clustergate.twin.kubelet.pool import KubeletPool

__all__ = ["Kubelet", "KubeletPool"]
