"""Errors in the AWS REST-JSON shape (EKS), so botocore raises ``ClientError`` with them."""

from __future__ import annotations

import json
import uuid

from aiohttp import web


class RestJsonError(Exception):
    """An error a REST-JSON API answers with: the code in ``x-amzn-ErrorType``, the message and
    the operation's extra members (``clusterName``, ``nodegroupName``...) in the body."""

    def __init__(self, status: int, code: str, message: str, **fields: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields

    def to_response(self) -> web.Response:
        request_id = str(uuid.uuid4())
        return web.Response(
            status=self.status,
            body=json.dumps({**self.fields, "message": self.message}).encode(),
            content_type="application/json",
            headers={"x-amzn-ErrorType": self.code, "x-amzn-RequestId": request_id},
        )
