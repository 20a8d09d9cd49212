"""The traffic side of the twin: two clusters' backends, the edge, the AWS objects, and the
Route 53 name servers that answer for the weighted records."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from clustergate.twin.netmap import Netmap
from clustergate.twin.route53.nameserver import Route53NameServer
from clustergate.twin.settings import TwinSettings
from clustergate.twin.traffic.aws_objects import (
    BACKEND_ADDRESSES,
    BACKENDS,
    PUBLIC_URL,
    RECORD_NAME,
    TrafficFacts,
    create_traffic_objects,
)
from clustergate.twin.traffic.backends import Backend
from clustergate.twin.traffic.edge import Edge
from clustergate.twin.traffic.weights import ListenerWeights

log = logging.getLogger("clustergate.twin.traffic")

DRIVERS = ("elbv2", "route53")
#: The twin's own credentials towards its AWS gateway; moto accepts any key.
TWIN_ACCESS_KEY = "twin-traffic"
#: Tries at finding one port free on both backends' addresses.
PORT_ATTEMPTS = 20


class TrafficSide:
    """Start the backends and the edge, create the AWS objects, then follow their weights.

    Two ways in, as on AWS. The edge is the ALB: it follows the listener's weighted target
    groups and splits every request on its own. The weighted Route 53 records are answered by
    the twin's Route 53 name servers over real DNS, one weighted draw per query; a client
    that resolves ``shop.clustergate.test`` connects straight to the backend's own loopback
    address (:data:`BACKEND_ADDRESSES`, one port for both), with no edge in between.
    ``driver`` says which of the two the twin's cluster config offers the cutover (``"elbv2"``
    or ``"route53"``). With the ``weights-ignored`` fault the edge and the name servers read
    their weights once, at bootstrap, and never again. ``seed`` makes the split, the DNS
    draws and the faults' random draws reproducible (tests).
    """

    def __init__(
        self,
        settings: TwinSettings,
        netmap: Netmap,
        aws_endpoint_url: str,
        driver: str = "elbv2",
        seed: int | None = None,
    ) -> None:
        self._check_driver(driver)
        self._settings = settings
        self._netmap = netmap
        self._aws_endpoint_url = aws_endpoint_url
        self._driver = driver
        self._seed = seed
        self._backends = {name: Backend(name, settings, self._random(name)) for name in BACKENDS}
        self._edge: Edge | None = None
        self._name_server: Route53NameServer | None = None
        self._backend_port = 0
        self._follower: asyncio.Task[None] | None = None
        self._session = boto3.session.Session(
            aws_access_key_id=TWIN_ACCESS_KEY,
            aws_secret_access_key=TWIN_ACCESS_KEY,
            region_name=settings.network.region,
        )

    def _random(self, component: str) -> random.Random:
        """A generator per component, so that a seeded run draws the same split and the same
        faults whatever order concurrent requests interleave in."""
        return random.Random(None if self._seed is None else f"{self._seed}/{component}")

    @staticmethod
    def _check_driver(driver: str) -> None:
        if driver not in DRIVERS:
            raise ValueError(f"unknown weight driver {driver!r}; known: {', '.join(DRIVERS)}")

    @property
    def edge_url(self) -> str:
        if self._edge is None:
            raise RuntimeError("the traffic side is not started")
        return self._edge.url

    @property
    def edge_weights(self) -> dict[str, int]:
        """The weights the edge splits by right now (after propagation)."""
        return self._edge.weights if self._edge is not None else {}

    async def _start_backends(self) -> None:
        """Both backends on one port, each on its own address, so that the port in the URL of
        the weighted name is the same whichever address it resolves to."""
        old, new = (self._backends[name] for name in BACKENDS)
        for _ in range(PORT_ATTEMPTS):
            port = await old.start(BACKEND_ADDRESSES[old.name])
            try:
                await new.start(BACKEND_ADDRESSES[new.name], port)
            except OSError:
                await old.stop()
                continue
            self._backend_port = port
            return
        raise OSError(
            f"no port free on both {BACKEND_ADDRESSES['old']} and {BACKEND_ADDRESSES['new']} "
            f"after {PORT_ATTEMPTS} tries"
        )

    async def start(self) -> None:
        await self._start_backends()
        backend_urls = {name: backend.url for name, backend in self._backends.items()}
        self._edge = Edge(backend_urls, self._settings, self._random("edge"))
        await self._edge.start()
        self._netmap.publish_url(PUBLIC_URL, self._edge.url)

    async def bootstrap(self, driver: str | None = None) -> TrafficFacts:
        if self._edge is None:
            raise RuntimeError("start() the traffic side before bootstrap()")
        if driver is not None:
            self._check_driver(driver)
            self._driver = driver
        created = await asyncio.to_thread(
            create_traffic_objects, self._session, self._aws_endpoint_url, self._settings
        )
        # The load balancer's own DNS name reaches the edge too, as it does on AWS.
        self._netmap.publish_url(f"http://{created.load_balancer_dns}", self._edge.url)
        elbv2 = self._session.client("elbv2", endpoint_url=self._aws_endpoint_url)
        source = ListenerWeights(elbv2, created.listener_arn, created.target_groups)
        self._edge.set_weights(await asyncio.to_thread(source.read))
        route53 = self._session.client("route53", endpoint_url=self._aws_endpoint_url)
        self._name_server = Route53NameServer(route53, self._settings, self._random("route53"))
        ns_host, ns_port = await self._name_server.start()
        if not self._settings.has_fault("weights-ignored"):
            self._follower = asyncio.create_task(self._follow(source), name="traffic-weights")
        return TrafficFacts(
            driver=self._driver,
            load_balancer_arn=created.load_balancer_arn,
            load_balancer_dns=created.load_balancer_dns,
            listener_arn=created.listener_arn,
            target_groups=dict(created.target_groups),
            hosted_zone_id=created.hosted_zone_id,
            record_name=RECORD_NAME,
            public_url=PUBLIC_URL,
            edge_url=self._edge.url,
            name_servers=(f"{ns_host}:{ns_port}",),
            record_url=f"http://{RECORD_NAME.rstrip('.')}:{self._backend_port}",
        )

    async def _follow(self, source: ListenerWeights) -> None:
        assert self._edge is not None
        period = self._settings.timings.weight_propagation
        while True:
            await asyncio.sleep(period)
            try:
                weights = await asyncio.to_thread(source.read)
            except (BotoCoreError, ClientError) as error:
                log.warning("edge could not read the listener weights, keeps the last: %s", error)
                continue
            self._edge.set_weights(weights)

    async def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None
        if self._name_server is not None:
            await self._name_server.stop()
            self._name_server = None
        if self._edge is not None:
            await self._edge.stop()
        for backend in self._backends.values():
            await backend.stop()
