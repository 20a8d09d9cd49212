"""The service-account token issuer: RS256 JWTs with the claims EKS issues, the TokenRequest
subresource, and the OIDC discovery documents AWS STS fetches to verify them."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from clustergate.twin.apiserver import errors
from clustergate.twin.apiserver.registry import now_rfc3339

Obj = dict[str, Any]

#: The API server's own audience (--api-audiences defaults to the issuer on EKS clusters' pods
#: asking for no audience; the twin answers with the in-cluster service URL).
API_AUDIENCE = "https://kubernetes.default.svc"
MIN_EXPIRATION = 600
DEFAULT_EXPIRATION = 3600


@dataclass(frozen=True)
class TokenIdentity:
    namespace: str
    service_account: str
    claims: Obj


class Issuer:
    def __init__(self, region: str) -> None:
        self.id = secrets.token_hex(16).upper()
        self.public_base = f"https://oidc.eks.{region}.amazonaws.com"
        self.url = f"{self.public_base}/id/{self.id}"
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()

    @property
    def path(self) -> str:
        return f"/id/{self.id}"

    def jwks(self) -> Obj:
        jwk = RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        jwk.update({"use": "sig", "alg": "RS256", "kid": self.kid})
        return {"keys": [jwk]}

    def openid_configuration(self) -> Obj:
        return {
            "issuer": self.url,
            "jwks_uri": f"{self.url}/keys",
            "authorization_endpoint": "urn:kubernetes:programmatic_authorization",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "claims_supported": ["sub", "iss"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def issue(
        self,
        namespace: str,
        service_account: Obj,
        audiences: list[str],
        expiration: int,
        pod: Obj | None = None,
    ) -> tuple[str, int]:
        now = int(time.time())
        sa_meta = service_account["metadata"]
        kubernetes_claim: Obj = {
            "namespace": namespace,
            "serviceaccount": {"name": sa_meta["name"], "uid": sa_meta["uid"]},
        }
        if pod is not None:
            kubernetes_claim["pod"] = {
                "name": pod["metadata"]["name"],
                "uid": pod["metadata"]["uid"],
            }
            node = (pod.get("spec") or {}).get("nodeName")
            if node:
                kubernetes_claim["node"] = {"name": node}
        claims = {
            "aud": audiences,
            "exp": now + expiration,
            "iat": now,
            "iss": self.url,
            "jti": secrets.token_hex(16),
            "kubernetes.io": kubernetes_claim,
            "nbf": now,
            "sub": f"system:serviceaccount:{namespace}:{sa_meta['name']}",
        }
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})
        return token, now + expiration

    def verify(self, token: str, audience: str = API_AUDIENCE) -> TokenIdentity | None:
        try:
            claims = jwt.decode(
                token,
                self._key.public_key(),
                algorithms=["RS256"],
                audience=audience,
                issuer=self.url,
            )
        except jwt.PyJWTError:
            return None
        info = claims.get("kubernetes.io") or {}
        return TokenIdentity(
            info.get("namespace", ""), (info.get("serviceaccount") or {}).get("name", ""), claims
        )


def token_request(
    issuer: Issuer, namespace: str, service_account: Obj, body: Any, pod_lookup: Any
) -> Obj:
    """Answer a TokenRequest; ``pod_lookup(ns, name)`` returns the bound pod or None."""
    if not isinstance(body, dict):
        raise errors.bad_request("the body of the request must be a TokenRequest object")
    spec = body.get("spec") or {}
    expiration = int(spec.get("expirationSeconds") or DEFAULT_EXPIRATION)
    name = service_account["metadata"]["name"]
    if expiration < MIN_EXPIRATION:
        why = f"Invalid value: {expiration}: may not specify a duration less than 10 minutes"
        raise errors.ApiError(
            422,
            "Invalid",
            f'TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: {why}',
            {
                "group": "authentication.k8s.io",
                "kind": "TokenRequest",
                "causes": [
                    {
                        "reason": "FieldValueInvalid",
                        "message": why,
                        "field": "spec.expirationSeconds",
                    }
                ],
            },
        )
    audiences = list(spec.get("audiences") or [API_AUDIENCE])
    pod = None
    bound = spec.get("boundObjectRef")
    if bound and bound.get("kind") == "Pod":
        pod = pod_lookup(namespace, bound.get("name", ""))
        if pod is None or (bound.get("uid") and bound["uid"] != pod["metadata"]["uid"]):
            raise errors.ApiError(
                404,
                "NotFound",
                f'pods "{bound.get("name", "")}" not found',
                {"name": bound.get("name", ""), "kind": "pods"},
            )
    token, expires = issuer.issue(namespace, service_account, audiences, expiration, pod)
    return {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": now_rfc3339(),
        },
        "spec": {
            "audiences": audiences,
            "expirationSeconds": expiration,
            "boundObjectRef": bound,
        },
        "status": {
            "token": token,
            "expirationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)),
        },
    }
