"""Which independent units a load phase's requests make, and where each unit went.

Behind a weighted DNS name a client draws once per resolution and sends every request of
that answer's lifetime (its TTL, on a connection it keeps) to the address it got: those
requests share one draw. The unit of evidence for "do clients move as the weights say" is
therefore the resolution, not the request (clustergate.stats.unit_share_check, and
tests/test_stats_clustered.py for how overconfident counting requests is). The load's users
record which resolution each request rode (load/locustfile.py); a request dialled by
address (an ALB's per-request split, say) is a unit of its own.

A unit goes to the cluster its responses name. Responses of one resolution that name both
clusters mean something behind the name splits again per request; such a unit is counted
under the cluster most of its responses name, and reported as mixed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from clustergate.load_phase import RequestRecord


@dataclass(frozen=True)
class Unit:
    key: str
    #: The cluster its responses named (the most named), None when none named one of ``names``.
    backend: str | None
    requests: int
    first_t: float
    mixed: bool = False


def units_of(records: Sequence[RequestRecord], names: Sequence[str]) -> list[Unit]:
    """The units of ``records`` in the order they began; ``names`` are the clusters."""
    grouped: dict[str, list[RequestRecord]] = {}
    for index, record in enumerate(records):
        key = record.resolution if record.resolution is not None else f"request-{index}"
        grouped.setdefault(key, []).append(record)
    units = []
    for key, members in grouped.items():
        named = Counter(r.backend for r in members if r.backend in names)
        backend = named.most_common(1)[0][0] if named else None
        units.append(Unit(key, backend, len(members), min(r.t for r in members), len(named) > 1))
    return sorted(units, key=lambda unit: (unit.first_t, unit.key))


def unit_outcomes(units: Sequence[Unit], new_backend: str) -> list[bool]:
    """Per unit that named a cluster, in order: did it go to ``new_backend``?"""
    return [unit.backend == new_backend for unit in units if unit.backend is not None]
