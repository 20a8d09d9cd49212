"""The twin's Kubernetes API server (see server.py)."""

from clustergate.twin.apiserver.server import ApiServer

__all__ = ["ApiServer"]
