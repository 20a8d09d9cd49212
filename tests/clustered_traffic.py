"""Simulated traffic behind a weighted DNS record: requests in clusters that share one draw.

Each client resolves the name through a resolver that caches the answer for the record's TTL
and keeps its connection to the address it got until the answer expires; then it resolves
again (a new, independent weighted draw) and reconnects. A client arrives with its resolver's
cache part-way through a TTL (uniformly), as load generators started at random times do.
Requests arrive as a Poisson process at ``requests_per_s`` per client. One unit is one
resolution; every request of a unit goes to the backend its answer named.

Used by tests/test_stats_clustered.py (seeded) and tests/bench_route53_units.py (printed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClusteredStep:
    #: Per unit (resolution): did its answer name the new cluster, and how many requests rode it.
    unit_is_new: np.ndarray
    unit_requests: np.ndarray

    @property
    def requests(self) -> int:
        return int(self.unit_requests.sum())

    @property
    def new_requests(self) -> int:
        return int(self.unit_requests[self.unit_is_new].sum())


def simulate_step(
    rng: np.random.Generator,
    *,
    clients: int,
    duration_s: float,
    ttl_s: float,
    requests_per_s: float,
    new_share: float,
) -> ClusteredStep:
    lengths: list[float] = []
    for first_expiry in rng.uniform(0.0, ttl_s, size=clients):
        starts = np.concatenate(([0.0], np.arange(first_expiry, duration_s, ttl_s)))
        ends = np.minimum(np.append(starts[1:], duration_s), duration_s)
        lengths.extend(ends - starts)
    unit_requests = rng.poisson(requests_per_s * np.asarray(lengths))
    unit_is_new = rng.random(len(lengths)) < new_share
    return ClusteredStep(unit_is_new, unit_requests)
