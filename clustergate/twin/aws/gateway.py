"""The AWS endpoint clients see: moto behind it, and what moto lacks in front of it.

Every request is forwarded to moto unchanged (method, path, headers, body and so the SigV4
signature), except:

- STS ``AssumeRoleWithWebIdentity`` (Query API, form POST or GET), which is verified here
  (:mod:`clustergate.twin.aws.web_identity`) before moto mints the credentials; the answer
  gains ``SubjectFromWebIdentityToken``, ``Audience`` and ``Provider``, which moto leaves out.
- EKS cluster descriptions: moto invents an OIDC issuer and cannot be told another, so the
  gateway writes the twin's issuer into ``cluster.identity.oidc.issuer``.
- EKS node-group version updates (UpdateNodegroupVersion, DescribeUpdate, ListUpdates), which
  moto lacks, are answered by :class:`NodegroupUpdates` once the AWS side attached it; it also
  shows an update's outcome in DescribeNodegroup.
- Query-API calls made with a role's session credentials, which get only what the role's
  policies allow (:mod:`clustergate.twin.aws.permissions`).
- Auto Scaling and EKS calls that may change a group are reported to a listener, so instances
  follow desired capacity at once rather than at the next poll.
"""

from __future__ import annotations

import asyncio
import json
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from clustergate.twin.aws import permissions
from clustergate.twin.aws.nodegroup_updates import NodegroupUpdates
from clustergate.twin.aws.query_errors import QueryApiError
from clustergate.twin.aws.web_identity import VerifiedIdentity, WebIdentityVerifier

log = logging.getLogger(__name__)

STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
_HOP_BY_HOP = frozenset(
    h.casefold()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Connection",
        "Transfer-Encoding",
        "Upgrade",
        "TE",
        "Trailer",
        "Content-Length",
    )
)
FORWARD_TIMEOUT_SECONDS = 60.0


def _signed_service(request: web.Request) -> str:
    """The service a SigV4 request is signed for: ``Credential=AKID/date/region/SERVICE/...``."""
    auth = request.headers.get("Authorization", "")
    credential = auth.partition("Credential=")[2].split(",", 1)[0]
    parts = credential.split("/")
    return parts[3] if len(parts) >= 5 else ""


class Gateway:
    def __init__(
        self,
        moto_url: str,
        session: aiohttp.ClientSession,
        verifier: WebIdentityVerifier,
    ) -> None:
        self._moto_url = moto_url.rstrip("/")
        self._session = session
        self._verifier = verifier
        #: cluster name -> the issuer DescribeCluster reports for it
        self.cluster_issuers: dict[str, str] = {}
        #: Answers node-group version updates (set by the AWS side once it has node groups).
        self.nodegroup_updates: NodegroupUpdates | None = None
        self._scaling_listeners: list[Callable[[], None]] = []
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_route("*", "/{tail:.*}", self._handle)

    def on_scaling_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every Auto Scaling, EKS or EC2 call that may change a group
        (an EC2 TerminateInstances makes the group replace the instance)."""
        self._scaling_listeners.append(listener)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        params = self._query_params(request, body)
        if params.get("Action") == "AssumeRoleWithWebIdentity":
            try:
                return await self._assume_role_with_web_identity(params)
            except QueryApiError as error:
                log.info("AssumeRoleWithWebIdentity refused: %s", error)
                return error.to_response()
        service = _signed_service(request)
        if permissions.judged(request.headers, params):
            refused = await asyncio.to_thread(
                permissions.refusal,
                service,
                request.method,
                request.path,
                request.headers,
                params,
                body,
            )
            if refused is not None:
                log.info("%s refused: %s", params.get("Action"), refused.text)
                return refused
        if service == "eks" and self.nodegroup_updates is not None:
            answer = await self.nodegroup_updates.handle(request, body)
            if answer is not None:
                return answer
        response = await self._forward(request, body)
        if service == "eks":
            response = self._rewrite_cluster_issuer(response)
            if self.nodegroup_updates is not None:
                response = self.nodegroup_updates.rewrite_nodegroup(request, response)
        changing = request.method != "GET" and not params.get("Action", "").startswith("Describe")
        if service in ("autoscaling", "eks", "ec2") and changing:
            for listener in self._scaling_listeners:
                listener()
        return response

    @staticmethod
    def _query_params(request: web.Request, body: bytes) -> dict[str, str]:
        params = {key: value for key, value in request.query.items()}
        if request.content_type == "application/x-www-form-urlencoded" and body:
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            params.update({key: values[-1] for key, values in form.items()})
        return params

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.casefold() not in _HOP_BY_HOP}
        async with self._session.request(
            request.method,
            self._moto_url + request.rel_url.raw_path_qs,
            headers=headers,
            data=body,
            allow_redirects=False,
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_SECONDS),
        ) as upstream:
            payload = await upstream.read()
            reply_headers = CIMultiDict(
                (k, v) for k, v in upstream.headers.items() if k.casefold() not in _HOP_BY_HOP
            )
            return web.Response(status=upstream.status, body=payload, headers=reply_headers)

    def _rewrite_cluster_issuer(self, response: web.Response) -> web.Response:
        if not self.cluster_issuers or response.status != 200 or not response.body:
            return response
        assert isinstance(response.body, bytes)
        try:
            document = json.loads(response.body)
        except ValueError:
            return response
        cluster = document.get("cluster") if isinstance(document, dict) else None
        if not isinstance(cluster, dict) or cluster.get("name") not in self.cluster_issuers:
            return response
        cluster.setdefault("identity", {}).setdefault("oidc", {})["issuer"] = self.cluster_issuers[
            cluster["name"]
        ]
        response.body = json.dumps(document).encode()
        return response

    async def _assume_role_with_web_identity(self, params: dict[str, str]) -> web.Response:
        for name in ("RoleArn", "RoleSessionName", "WebIdentityToken"):
            if not params.get(name):
                raise QueryApiError(
                    400,
                    "ValidationError",
                    f"1 validation error detected: Value null at '{name[0].lower()}{name[1:]}' "
                    "failed to satisfy constraint: Member must not be null",
                )
        identity = await self._verifier.verify(params["WebIdentityToken"], params["RoleArn"])
        form = {
            key: value
            for key, value in params.items()
            if key
            in ("RoleArn", "RoleSessionName", "WebIdentityToken", "DurationSeconds", "Policy")
        }
        form.update(Action="AssumeRoleWithWebIdentity", Version="2011-06-15")
        async with self._session.post(
            self._moto_url + "/",
            data=form,
            timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_SECONDS),
        ) as upstream:
            payload = await upstream.read()
            if upstream.status != 200:
                return web.Response(status=upstream.status, body=payload, content_type="text/xml")
        return web.Response(
            body=_add_identity_fields(payload, identity),
            content_type="text/xml",
        )


def _add_identity_fields(payload: bytes, identity: VerifiedIdentity) -> bytes:
    """moto's AssumeRoleWithWebIdentity answer with the fields real STS adds."""
    ET.register_namespace("", STS_NAMESPACE)
    root = ET.fromstring(payload)
    result = root.find(f"{{{STS_NAMESPACE}}}AssumeRoleWithWebIdentityResult")
    if result is None:
        raise QueryApiError(500, "InternalFailure", "moto's answer has no result", sender=False)
    for name, value in (
        ("SubjectFromWebIdentityToken", identity.subject),
        ("Audience", identity.audience),
        ("Provider", identity.provider_arn),
    ):
        ET.SubElement(result, f"{{{STS_NAMESPACE}}}{name}").text = value
    return ET.tostring(root, encoding="utf-8", xml_declaration=False)
