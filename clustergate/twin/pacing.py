"""How long a periodic twin job waits before its next round.

The whole twin shares one event loop (and one GIL with moto's threads). A job whose round grows
with the cluster (the autoscaler's scan, the fleet's look at every Auto Scaling instance) would,
at 1,000 nodes, leave nothing for the API server if it kept its small-cluster interval. So a
round that took ``spent`` seconds waits long enough that the job uses at most ``share`` of the
time; on a small twin the usual interval wins and nothing changes.
"""

from __future__ import annotations

#: The share of the twin's time one periodic job may take.
JOB_SHARE = 0.1


def pause_after(interval: float, spent: float, share: float = JOB_SHARE) -> float:
    """Seconds from the end of a round that took ``spent`` seconds to the next round."""
    return max(interval - spent, spent * (1 - share) / share)
