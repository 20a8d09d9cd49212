"""The instance metadata service of one instance, as its processes reach it.

IMDSv2 only (the launch templates say ``HttpTokens: required``): ``PUT /latest/api/token`` with
``X-aws-ec2-metadata-token-ttl-seconds`` hands out a session token; every ``GET`` must carry it
in ``X-aws-ec2-metadata-token`` or is refused with 401, as a v1 request is.

Two listeners stand for the two places a caller can be. On the host network the token's answer
travels one hop. From a container without host networking it travels one more (through the
bridge/veth), so when the launch template's ``HttpPutResponseHopLimit`` is 1 the answer's TTL
runs out on the way: the container sees its PUT hang until it gives up. The pod-network
listener does exactly that: it holds such a PUT open (bounded) and drops it unanswered.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
MAX_TOKEN_TTL_SECONDS = 21600
#: How long an unanswerable PUT is held before the connection is dropped. Clients give up far
#: sooner (botocore: 1 s); the bound only keeps a forgotten connection from lingering.
HOLD_SECONDS = 10.0
#: Node credentials are renewed when they have less than this left, as IMDS does.
CREDENTIALS_REFRESH_SECONDS = 300.0
#: How many hops the PUT answer travels to a caller of this listener (1 host, 2 container).
HOPS = web.AppKey("hops", int)

#: Node-role credentials in the IMDS JSON shape (Code, AccessKeyId, ..., Expiration).
Credentials = dict[str, str]


@dataclass(frozen=True)
class InstanceIdentity:
    instance_id: str
    instance_type: str
    ami_id: str
    zone: str
    region: str
    account_id: str
    local_ipv4: str
    local_hostname: str
    role_name: str
    instance_profile_arn: str
    hop_limit: int


class InstanceMetadataService:
    def __init__(
        self,
        identity: InstanceIdentity,
        credentials: Callable[[], Awaitable[Credentials]],
    ) -> None:
        self.identity = identity
        self._fetch_credentials = credentials
        self._credentials: Credentials | None = None
        self._credentials_lock = asyncio.Lock()
        self._tokens: dict[str, float] = {}
        self._runners: list[web.AppRunner] = []
        self._held: set[asyncio.Task[Any]] = set()

    async def start(self) -> tuple[tuple[str, int], tuple[str, int]]:
        """Open both listeners; returns (host-network address, pod-network address)."""
        host = await self._listen(hops=1)
        pod = await self._listen(hops=2)
        return host, pod

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    async def _listen(self, hops: int) -> tuple[str, int]:
        app = web.Application()
        app[HOPS] = hops
        app.router.add_put("/latest/api/token", self._token)
        app.router.add_get("/{path:.*}", self._get)
        runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runners.append(runner)
        host, port = runner.addresses[0][:2]
        return host, port

    async def _token(self, request: web.Request) -> web.StreamResponse:
        if request.app[HOPS] > self.identity.hop_limit:
            await asyncio.sleep(HOLD_SECONDS)
            if request.transport is not None:
                request.transport.close()
            raise asyncio.CancelledError
        try:
            ttl = int(request.headers[TOKEN_TTL_HEADER])
        except (KeyError, ValueError):
            ttl = 0
        if not 1 <= ttl <= MAX_TOKEN_TTL_SECONDS:
            return web.Response(status=400, text="Bad Request")
        now = time.monotonic()
        self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}
        token = secrets.token_urlsafe(40)
        self._tokens[token] = now + ttl
        return web.Response(text=token, headers={TOKEN_TTL_HEADER: str(ttl)})

    async def _get(self, request: web.Request) -> web.StreamResponse:
        token = request.headers.get(TOKEN_HEADER, "")
        if self._tokens.get(token, 0.0) <= time.monotonic():
            return web.Response(status=401, text="Unauthorized")
        path = request.match_info["path"]
        value = await self._lookup(path)
        if value is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(text=value)

    async def _lookup(self, path: str) -> str | None:
        identity = self.identity
        role_path = f"latest/meta-data/iam/security-credentials/{identity.role_name}"
        if path.rstrip("/") == role_path:
            return json.dumps(await self.credentials(), indent=2)
        tree: dict[str, Any] = {
            "ami-id": identity.ami_id,
            "hostname": identity.local_hostname,
            "instance-id": identity.instance_id,
            "instance-type": identity.instance_type,
            "local-hostname": identity.local_hostname,
            "local-ipv4": identity.local_ipv4,
            "placement": {"availability-zone": identity.zone, "region": identity.region},
            "iam": {
                "info": json.dumps(
                    {
                        "Code": "Success",
                        "InstanceProfileArn": identity.instance_profile_arn,
                        "InstanceProfileId": "AIPA" + identity.instance_id[2:].upper(),
                    }
                ),
                "security-credentials": {identity.role_name: ""},
            },
        }
        document = {
            "accountId": identity.account_id,
            "architecture": "x86_64",
            "availabilityZone": identity.zone,
            "imageId": identity.ami_id,
            "instanceId": identity.instance_id,
            "instanceType": identity.instance_type,
            "privateIp": identity.local_ipv4,
            "region": identity.region,
            "version": "2017-09-30",
        }
        dynamic = {"instance-identity": {"document": json.dumps(document, indent=2)}}
        node: Any = {"latest": {"meta-data": tree, "dynamic": dynamic}}
        for part in (p for p in path.split("/") if p):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        if isinstance(node, dict):
            return "\n".join(
                f"{name}/" if isinstance(v, dict) else name for name, v in node.items()
            )
        return str(node)

    async def credentials(self) -> Credentials:
        """The node role's credentials, renewed shortly before they expire."""
        async with self._credentials_lock:
            current = self._credentials
            if current is None or _seconds_left(current) < CREDENTIALS_REFRESH_SECONDS:
                current = await self._fetch_credentials()
                self._credentials = current
            return current


def _seconds_left(credentials: Credentials) -> float:
    expiration = datetime.strptime(credentials["Expiration"], "%Y-%m-%dT%H:%M:%SZ")
    return (expiration.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds()
