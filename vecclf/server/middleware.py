"""Plain ASGI middleware in front of every route: the bearer token and the request-body size limit."""

from __future__ import annotations

import hmac
from collections.abc import Collection

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import LimitExceededError


def error_response(kind: str, message: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    """The API's one error shape: ``{"error": {"type", "message"}}``."""
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status, headers=headers)


class BodyTooLarge(LimitExceededError):
    """The request body is larger than the server accepts."""


class LimitAndAuthMiddleware:
    """Bearer-token check (all routes but ``public``) and request-body size limit."""

    def __init__(self, app: ASGIApp, *, token: str | None, max_body_bytes: int, public: Collection[str]) -> None:
        self.app = app
        self.token = token
        self.max_body = max_body_bytes
        self.public = frozenset(public)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.token and scope.get("path") not in self.public:
            supplied = headers.get("authorization", "")
            expected = f"Bearer {self.token}"
            if not hmac.compare_digest(supplied.encode(), expected.encode()):
                resp = error_response(
                    "Unauthorized", "missing or wrong bearer token", 401, {"WWW-Authenticate": "Bearer"}
                )
                await resp(scope, receive, send)
                return
        length = headers.get("content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit()):
                await error_response("InvalidInputError", "bad Content-Length header", 400)(scope, receive, send)
                return
            if int(length) > self.max_body:
                msg = f"request body of {length} bytes exceeds the limit of {self.max_body} bytes"
                await error_response("LimitExceededError", msg, 413)(scope, receive, send)
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge(f"request body exceeds the limit of {self.max_body} bytes")
            return message

        await self.app(scope, counted, send)
