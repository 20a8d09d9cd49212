"""Which runs count as alive: the heartbeat decides, age only for a run that never had one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from kubernetes import client

from clustergate.heartbeat import Runs, heartbeat_expiry

NOW = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)
RUNS = Runs(
    NOW,
    {"beating": NOW + timedelta(seconds=5), "expired": NOW - timedelta(seconds=1)},
    own="me",
    grace_s=120,
)
AN_HOUR_AGO = NOW - timedelta(hours=1)


@pytest.mark.parametrize(
    ("run_id", "created", "alive"),
    [
        ("me", AN_HOUR_AGO, True),  # the run asking never sweeps itself
        ("beating", AN_HOUR_AGO, True),  # however old: its heartbeat is renewed
        ("expired", NOW, False),  # however young: its heartbeat expired
        ("silent", NOW - timedelta(seconds=30), True),  # no heartbeat yet, within the grace
        ("silent", NOW - timedelta(seconds=121), False),  # no heartbeat, past the grace
        ("silent", None, False),  # no heartbeat and no age to go by
        (None, NOW, True),  # unlabelled: by age alone
    ],
)
def test_a_run_is_alive_while_its_heartbeat_is(run_id, created, alive: bool) -> None:
    assert RUNS.alive(run_id, created) is alive


def test_why_a_run_is_dead_names_the_expiry_or_the_missing_heartbeat() -> None:
    assert RUNS.why_dead("expired") == "heartbeat expired 2026-12-04 17:59:59 UTC"
    assert RUNS.why_dead("silent") == "no heartbeat, older than 120 s"


def test_a_heartbeat_expires_its_duration_after_its_last_renewal() -> None:
    lease = client.V1Lease(
        spec=client.V1LeaseSpec(
            holder_identity="r", lease_duration_seconds=30, acquire_time=AN_HOUR_AGO, renew_time=NOW
        )
    )
    assert heartbeat_expiry(lease) == NOW + timedelta(seconds=30)
    lease.spec.renew_time = None
    assert heartbeat_expiry(lease) == AN_HOUR_AGO + timedelta(seconds=30)
    assert heartbeat_expiry(client.V1Lease(spec=client.V1LeaseSpec())) is None
