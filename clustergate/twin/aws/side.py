"""The twin's AWS: moto server for state, the gateway for what moto lacks, the instance fleet."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl

import aiohttp
from aiohttp import web
from moto.server import ThreadedMotoServer

from clustergate.twin.aws.facts import AwsFacts
from clustergate.twin.aws.fleet import Fleet
from clustergate.twin.aws.gateway import Gateway
from clustergate.twin.aws.images import ImageCatalog
from clustergate.twin.aws.issuer_keys import IssuerKeys
from clustergate.twin.aws.moto_clients import MotoClients
from clustergate.twin.aws.nodegroup_updates import ClientFactory, NodegroupUpdates
from clustergate.twin.aws.provision import (
    EKS_OIDC_ROOT_THUMBPRINT,
    DefaultVpc,
    look_around,
    provision,
)
from clustergate.twin.aws.web_identity import WebIdentityVerifier
from clustergate.twin.cloud import NodeLauncher
from clustergate.twin.netmap import Netmap
from clustergate.twin.settings import ACCOUNT_ID, TwinSettings

log = logging.getLogger(__name__)


def public_endpoints(region: str) -> tuple[str, ...]:
    """The AWS endpoints the gateway stands for."""
    return (
        f"https://sts.{region}.amazonaws.com",
        "https://sts.amazonaws.com",
        "https://iam.amazonaws.com",
        f"https://eks.{region}.amazonaws.com",
        f"https://ec2.{region}.amazonaws.com",
        f"https://autoscaling.{region}.amazonaws.com",
        f"https://elasticloadbalancing.{region}.amazonaws.com",
        "https://route53.amazonaws.com",
    )


def ca_thumbprint(ca_pem_path: str) -> str:
    """SHA-1 of the CA certificate, as IAM OIDC providers record it."""
    with open(ca_pem_path) as pem:
        der = ssl.PEM_cert_to_DER_cert(pem.read())
    return hashlib.sha1(der).hexdigest()


class AwsSide:
    """Start with :meth:`start`, create the cluster's AWS resources with :meth:`bootstrap`.
    Node-group version updates drain nodes through the Kubernetes API with a client from the
    factory given to :meth:`attach_kubernetes` (before or after bootstrap).

    moto keeps its state per process: one AwsSide per process at a time (start resets it).
    """

    def __init__(self, settings: TwinSettings, netmap: Netmap) -> None:
        self.settings = settings
        self.netmap = netmap
        self.endpoint_url = ""
        self.moto_url = ""
        self._moto_server: ThreadedMotoServer | None = None
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._moto: MotoClients | None = None
        self._keys: IssuerKeys | None = None
        self._gateway: Gateway | None = None
        self._network: asyncio.Task[DefaultVpc] | None = None
        self._images = ImageCatalog()
        self._client_factory: ClientFactory | None = None
        self._updates: NodegroupUpdates | None = None
        self.fleet: Fleet | None = None

    def attach_kubernetes(self, client_factory: ClientFactory) -> None:
        """Give node-group updates an admin Kubernetes client factory (cordon, evict, watch
        nodes); until then UpdateNodegroupVersion answers ServerException."""
        self._client_factory = client_factory
        if self._updates is not None:
            self._updates.client_factory = client_factory

    async def start(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        await asyncio.to_thread(server.start)
        self._moto_server = server
        host, port = server.get_host_and_port()
        self.moto_url = f"http://{host}:{port}"
        self._session = aiohttp.ClientSession()
        async with self._session.post(f"{self.moto_url}/moto-api/reset") as response:
            response.raise_for_status()
        self._moto = await asyncio.to_thread(
            MotoClients, self.moto_url, self.settings.network.region
        )
        self._network = asyncio.create_task(
            asyncio.to_thread(
                look_around, self._moto, self.settings.network.kubernetes_version, self._images
            )
        )
        self._keys = IssuerKeys(self.netmap, self._session)
        self._gateway = Gateway(
            self.moto_url, self._session, WebIdentityVerifier(self._moto, self._keys)
        )
        self._runner = web.AppRunner(self._gateway.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        gateway_port = self._runner.addresses[0][1]
        self.endpoint_url = f"http://127.0.0.1:{gateway_port}"
        for public in public_endpoints(self.settings.network.region):
            self.netmap.publish_url(public, self.endpoint_url)
        log.info("AWS gateway at %s, moto at %s", self.endpoint_url, self.moto_url)

    async def bootstrap(
        self, issuer: str, launcher: NodeLauncher, issuer_ca_pem_path: str | None = None
    ) -> AwsFacts:
        """Create the account's resources for a cluster whose service-account issuer is
        ``issuer`` (served over HTTPS with the CA in ``issuer_ca_pem_path``, or over plain HTTP
        when None), boot the initial instances through ``launcher``, and keep instances
        following the Auto Scaling groups from then on."""
        assert self._moto is not None
        assert self._keys is not None
        assert self._gateway is not None
        assert self._network is not None, "AwsSide.start must come first"
        if self.fleet is not None:
            raise RuntimeError("AwsSide.bootstrap was already called")
        net = self.settings.network
        if issuer_ca_pem_path is not None:
            self._keys.trust_ca(issuer_ca_pem_path)
            thumbprint = await asyncio.to_thread(ca_thumbprint, issuer_ca_pem_path)
        else:
            thumbprint = EKS_OIDC_ROOT_THUMBPRINT
        self._gateway.cluster_issuers[net.cluster_name] = issuer
        provisioned = await asyncio.to_thread(
            provision, self._moto, self.settings, await self._network, issuer, thumbprint
        )
        self.fleet = Fleet(
            self.settings, self.netmap, self._moto, launcher, provisioned, self._images
        )
        self._gateway.on_scaling_change(self.fleet.poke)
        self._updates = NodegroupUpdates(
            self.settings, self._moto, self.fleet, self._images, provisioned.groups
        )
        self._updates.client_factory = self._client_factory
        self._gateway.nodegroup_updates = self._updates
        await self.fleet.reconcile()
        self.fleet.start()
        return AwsFacts(
            account_id=ACCOUNT_ID,
            region=net.region,
            cluster_name=net.cluster_name,
            issuer=issuer,
            oidc_provider_arn=provisioned.oidc_provider_arn,
            node_role_arn=provisioned.node_role_arn,
            endpoint_url=self.endpoint_url,
            irsa=provisioned.irsa,
            asg_names={group.shape.name: group.asg_name for group in provisioned.groups},
            launch_template_ids={
                group.shape.name: group.launch_template_id for group in provisioned.groups
            },
        )

    async def stop(self) -> None:
        if self._network is not None:
            with contextlib.suppress(Exception):
                await self._network
            self._network = None
        if self._updates is not None:
            await self._updates.stop()
            self._updates = None
        if self.fleet is not None:
            await self.fleet.stop()
            self.fleet = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._moto_server is not None:
            await asyncio.to_thread(self._moto_server.stop)
            self._moto_server = None
