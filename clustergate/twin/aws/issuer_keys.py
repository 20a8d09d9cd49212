"""The signing keys of an OIDC issuer, fetched as STS fetches them and kept for a short while.

STS reads ``<iss>/.well-known/openid-configuration``, follows its ``jwks_uri`` and verifies the
token's signature with the key named by the token's ``kid``. The twin's issuer (the API server)
listens on loopback, so every URL goes through the netmap first.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass

import aiohttp
import jwt

from clustergate.twin.netmap import Netmap

#: How long fetched keys are trusted before the issuer is asked again.
KEYS_TTL_SECONDS = 30.0
#: A token naming an unknown kid refetches at most this often (key rotation).
REFETCH_MIN_SECONDS = 2.0
FETCH_TIMEOUT_SECONDS = 5.0


class KeyFetchError(Exception):
    """The issuer's discovery document or JWKS could not be read."""


@dataclass
class _Cached:
    keys: jwt.PyJWKSet
    fetched_at: float


class IssuerKeys:
    def __init__(self, netmap: Netmap, session: aiohttp.ClientSession) -> None:
        self._netmap = netmap
        self._session = session
        self._ssl: ssl.SSLContext | None = None
        self._cache: dict[str, _Cached] = {}
        self._lock = asyncio.Lock()

    def trust_ca(self, ca_pem_path: str) -> None:
        """Verify HTTPS issuers against this CA (the API server's own) instead of the system's."""
        self._ssl = ssl.create_default_context(cafile=ca_pem_path)
        self._cache.clear()

    async def signing_keys(self, issuer: str, kid: str | None) -> list[jwt.PyJWK]:
        """Keys of ``issuer`` that may have signed a token with header ``kid``."""
        async with self._lock:
            cached = self._cache.get(issuer)
            now = time.monotonic()
            stale = cached is None or now - cached.fetched_at > KEYS_TTL_SECONDS
            unknown_kid = (
                cached is not None
                and kid is not None
                and all(key.key_id != kid for key in cached.keys.keys)
                and now - cached.fetched_at > REFETCH_MIN_SECONDS
            )
            if stale or unknown_kid:
                cached = _Cached(await self._fetch(issuer), time.monotonic())
                self._cache[issuer] = cached
            assert cached is not None
        if kid is None:
            return list(cached.keys.keys)
        return [key for key in cached.keys.keys if key.key_id == kid]

    async def _fetch(self, issuer: str) -> jwt.PyJWKSet:
        discovery = await self._get_json(issuer.rstrip("/") + "/.well-known/openid-configuration")
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise KeyFetchError(f"discovery document of {issuer} has no jwks_uri")
        try:
            return jwt.PyJWKSet.from_dict(await self._get_json(jwks_uri))
        except jwt.PyJWKSetError as error:
            raise KeyFetchError(f"JWKS of {issuer} at {jwks_uri} is unusable: {error}") from error

    async def _get_json(self, url: str) -> dict:
        local = self._netmap.resolve_url(url)
        ssl_context: ssl.SSLContext | bool = self._ssl if self._ssl is not None else True
        try:
            async with self._session.get(
                local,
                ssl=ssl_context if local.startswith("https:") else False,
                timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS),
            ) as response:
                if response.status != 200:
                    raise KeyFetchError(f"GET {url} (at {local}) answered {response.status}")
                document = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise KeyFetchError(f"GET {url} (at {local}) failed: {error!r}") from error
        if not isinstance(document, dict):
            raise KeyFetchError(f"GET {url} (at {local}) did not return a JSON object")
        return document
