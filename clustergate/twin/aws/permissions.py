"""Calls made with a role's credentials get only what the role's identity policies allow.

moto evaluates IAM policies only with its access control on for every request, and then the
twin's own components and the runner's keys would need IAM users of their own. The gateway
instead asks moto's policy evaluation about each request signed with credentials that STS
minted (a session token: IRSA web identities, node roles) and refuses what the role's policies
do not allow, in the answer AWS gives. It covers the Query-protocol services (IAM, STS, EC2,
Auto Scaling, ELBv2), which are what the twin's cluster config asks probe pods to call; calls
to REST services (EKS, Route 53) pass unevaluated, as moto would let them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from xml.sax.saxutils import escape

from aiohttp import web
from moto.core.exceptions import AccessDeniedError, InvalidClientTokenIdError
from moto.iam.access_control import IAMRequest
from multidict import CIMultiDict

from clustergate.twin.aws.query_errors import QueryApiError
from clustergate.twin.settings import ACCOUNT_ID


def judged(headers: Mapping[str, str], params: dict[str, str]) -> bool:
    """Whether :func:`refusal` has something to judge: a Query-API call with session keys."""
    return bool(params.get("Action")) and all(
        name in headers for name in ("X-Amz-Security-Token", "Authorization")
    )


def refusal(
    service: str,
    method: str,
    path: str,
    headers: Mapping[str, str],
    params: dict[str, str],
    body: bytes,
) -> web.Response | None:
    """For a request :func:`judged` accepts, signed for ``service``: the AccessDenied answer
    when the role behind its credentials may not call its action; None when it may."""
    try:
        request = IAMRequest(
            account_id=ACCOUNT_ID,
            method=method,
            path=path,
            data=params,
            body=body,
            headers=CIMultiDict(headers),
            action=params["Action"],
        )
        request.check_action_permitted("*")
    except InvalidClientTokenIdError:
        return None
    except AccessDeniedError as denied:
        message = f"{denied.message} because no identity-based policy allows this action"
        if service == "ec2":
            return _ec2_unauthorized(message)
        return QueryApiError(403, "AccessDenied", message).to_response()
    return None


def _ec2_unauthorized(message: str) -> web.Response:
    """EC2 answers in its own error shape, with the code UnauthorizedOperation."""
    request_id = str(uuid.uuid4())
    body = (
        "<Response><Errors><Error><Code>UnauthorizedOperation</Code>"
        f"<Message>You are not authorized to perform this operation. {escape(message)}</Message>"
        f"</Error></Errors><RequestID>{request_id}</RequestID></Response>"
    )
    return web.Response(status=403, body=body.encode(), content_type="text/xml")
