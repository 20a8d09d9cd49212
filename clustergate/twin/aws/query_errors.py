"""Errors in the AWS Query protocol's XML shape, so botocore raises ``ClientError`` with them."""

from __future__ import annotations

import uuid
from xml.sax.saxutils import escape

from aiohttp import web


class QueryApiError(Exception):
    """An error an AWS Query API (STS, IAM, Auto Scaling...) answers with."""

    def __init__(self, status: int, code: str, message: str, sender: bool = True) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.sender = sender

    def to_response(self) -> web.Response:
        request_id = str(uuid.uuid4())
        body = (
            '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            f"<Error><Type>{'Sender' if self.sender else 'Receiver'}</Type>"
            f"<Code>{escape(self.code)}</Code><Message>{escape(self.message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return web.Response(
            status=self.status,
            body=body.encode(),
            content_type="text/xml",
            headers={"x-amzn-RequestId": request_id},
        )
