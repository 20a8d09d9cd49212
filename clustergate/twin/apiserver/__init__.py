"""The twin's Kubernetes API server (see server.py); PolicyRule describes restricted tokens."""

from clustergate.twin.apiserver.auth import PolicyRule
from clustergate.twin.apiserver.server import ApiServer

__all__ = ["ApiServer", "PolicyRule"]
