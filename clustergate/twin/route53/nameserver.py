"""Route 53's name servers in the twin: every hosted zone in moto, served over real DNS.

The zones and their record sets are read from the Route 53 API (moto in server mode, as
changed through boto3 ``change_resource_record_sets``) and re-read every
``timings.weight_propagation`` seconds, which is the twin's propagation delay (Route 53 says
changes reach all its name servers within 60 seconds). Each query is answered on its own by
:func:`clustergate.twin.route53.answers.answer`: one weighted draw per query, the record's TTL.
With the ``weights-ignored`` fault the zones are read once, at start, and never again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

import dns.message
from botocore.exceptions import BotoCoreError, ClientError

from clustergate.twin.dns.server import DnsServer, Request
from clustergate.twin.route53.answers import HostedZone, answer
from clustergate.twin.settings import TwinSettings

log = logging.getLogger("clustergate.twin.route53")


def read_zones(route53: Any) -> list[HostedZone]:
    """Every hosted zone with all its record sets (blocking: boto3)."""
    zones = []
    for page in route53.get_paginator("list_hosted_zones").paginate():
        for zone in page["HostedZones"]:
            records = [
                record
                for records_page in route53.get_paginator("list_resource_record_sets").paginate(
                    HostedZoneId=zone["Id"]
                )
                for record in records_page["ResourceRecordSets"]
            ]
            zones.append(HostedZone.from_api(zone["Name"], records))
    return zones


class Route53NameServer:
    """``await start()`` listens on ``host`` (UDP and TCP, a free port): see :attr:`address`."""

    def __init__(
        self, route53: Any, settings: TwinSettings, rng: random.Random, host: str = "127.0.0.1"
    ) -> None:
        self._route53 = route53
        self._settings = settings
        self._rng = rng
        self._zones: list[HostedZone] = []
        self._server = DnsServer(self._answer, host)
        self._follower: asyncio.Task[None] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self._server.address

    async def start(self) -> tuple[str, int]:
        await self.refresh()
        address = await self._server.start()
        if not self._settings.has_fault("weights-ignored"):
            self._follower = asyncio.create_task(self._follow(), name="route53-zones")
        return address

    async def refresh(self) -> None:
        self._zones = await asyncio.to_thread(read_zones, self._route53)

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self._settings.timings.weight_propagation)
            try:
                await self.refresh()
            except (BotoCoreError, ClientError) as error:
                log.warning("Route 53 name server keeps its last zones: %s", error)

    async def _answer(self, query: dns.message.Message, _: Request) -> dns.message.Message:
        return answer(self._zones, query, self._rng.random)

    async def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None
        await self._server.stop()
