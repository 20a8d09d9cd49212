"""The twin's traffic: an old and a new cluster behind an edge split by AWS-API weights.

``TrafficSide(settings, netmap, aws_endpoint_url)``; ``await start()``; ``await bootstrap()``
returns :class:`TrafficFacts`; ``edge_url``; ``await stop()``.
"""

from clustergate.twin.traffic.aws_objects import TrafficFacts
from clustergate.twin.traffic.side import TrafficSide

__all__ = ["TrafficFacts", "TrafficSide"]
