"""STS AssumeRoleWithWebIdentity's checks, in the order STS makes them.

1. the token is a JWT;
2. IAM has an OIDC provider whose URL is the token's ``iss``;
3. the signature verifies against the issuer's published keys;
4. the token has not expired;
5. one of its audiences is in the provider's client ID list;
6. the role's trust policy allows the provider, for the token's ``sub`` and ``aud``.

moto accepts any token for any role; the gateway runs these checks before it lets moto mint
the credentials.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import jwt

from clustergate.twin.aws.issuer_keys import IssuerKeys, KeyFetchError
from clustergate.twin.aws.moto_clients import MotoClients
from clustergate.twin.aws.policy import PolicyError, Request, is_allowed
from clustergate.twin.aws.query_errors import QueryApiError

log = logging.getLogger(__name__)

ACTION = "sts:AssumeRoleWithWebIdentity"


@dataclass(frozen=True)
class VerifiedIdentity:
    subject: str
    audience: str
    provider_arn: str


def _invalid(message: str) -> QueryApiError:
    return QueryApiError(400, "InvalidIdentityToken", message)


def _access_denied() -> QueryApiError:
    return QueryApiError(403, "AccessDenied", f"Not authorized to perform {ACTION}")


def _audiences(claims: dict) -> list[str]:
    aud = claims.get("aud", [])
    return [aud] if isinstance(aud, str) else [str(item) for item in aud]


class WebIdentityVerifier:
    def __init__(self, moto: MotoClients, keys: IssuerKeys) -> None:
        self._moto = moto
        self._keys = keys

    async def verify(self, token: str, role_arn: str) -> VerifiedIdentity:
        """The identity ``token`` proves for ``role_arn``, or the QueryApiError STS answers."""
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as error:
            raise _invalid(
                "The ID Token provided is not a valid JWT. "
                "(You may see this error if you sent an Access Token)"
            ) from error
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or not issuer:
            raise _invalid("The ID Token provided is not a valid JWT: it has no iss claim")
        provider_url = issuer.removeprefix("https://")
        provider = await asyncio.to_thread(self._moto.find_oidc_provider, provider_url)
        if provider is None:
            raise _invalid(f"No OpenIDConnect provider found in your account for {issuer}")

        await self._verify_signature(token, header, issuer)

        now = int(time.time())
        expiry = claims.get("exp")
        if not isinstance(expiry, int | float):
            raise _invalid("The ID Token provided has no exp claim")
        if now >= expiry:
            raise QueryApiError(
                400,
                "ExpiredTokenException",
                f"Token expired: current date/time {now} must be before the expiration "
                f"date/time {int(expiry)}",
            )

        audience = next((aud for aud in _audiences(claims) if aud in provider.client_ids), None)
        if audience is None:
            raise _invalid("Incorrect token audience")

        subject = str(claims.get("sub", ""))
        trust = await asyncio.to_thread(self._moto.trust_policy, role_arn)
        if trust is None:
            raise _access_denied()
        request = Request(
            principal_type="Federated",
            principal=provider.arn,
            action=ACTION,
            context={f"{provider_url}:sub": [subject], f"{provider_url}:aud": [audience]},
        )
        try:
            allowed = is_allowed(trust, request)
        except PolicyError as error:
            log.warning("trust policy of %s cannot be evaluated: %s", role_arn, error)
            allowed = False
        if not allowed:
            raise _access_denied()
        return VerifiedIdentity(subject=subject, audience=audience, provider_arn=provider.arn)

    async def _verify_signature(self, token: str, header: dict, issuer: str) -> None:
        kid = header.get("kid")
        try:
            keys = await self._keys.signing_keys(issuer, kid if isinstance(kid, str) else None)
        except KeyFetchError as error:
            log.info("issuer keys unavailable: %s", error)
            raise _invalid(
                "Couldn't retrieve verification key from your identity provider,  please "
                "reference AssumeRoleWithWebIdentity documentation for requirements"
            ) from error
        for key in keys:
            try:
                jwt.decode(
                    token,
                    key=key,
                    algorithms=["RS256"],
                    options={"verify_exp": False, "verify_aud": False, "verify_nbf": False},
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as error:
                raise _invalid(f"The ID Token provided is not valid: {error}") from error
            return
        raise _invalid("The web identity token's signature could not be verified")
