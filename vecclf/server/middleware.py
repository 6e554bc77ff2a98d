"""Plain ASGI middleware in front of every route: who may ask, and how much.

In order: the ``Host`` header must name this server (a DNS-rebinding page names its own domain); a request a
browser sends from another site is refused (``Origin``, ``Sec-Fetch-Site``), so a page the user visits cannot
add, train or read through a server without a token; the bearer token, when set; the request-body limit.
Every response carries headers that keep the page out of other sites' frames and stop content sniffing.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Collection
from urllib.parse import urlsplit

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import LimitExceededError

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),
]


def error_response(kind: str, message: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    """The API's one error shape: ``{"error": {"type", "message"}}``."""
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status, headers=headers)


class BodyTooLarge(LimitExceededError):
    """The request body is larger than the server accepts."""


def host_name(value: str) -> str:
    """The host of a ``Host`` header or URL authority, lower-cased, without port or IPv6 brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def allowed_hosts_for(bind: str, extra: Collection[str] = ()) -> frozenset[str] | None:
    """The ``Host`` names a server bound to ``bind`` answers: the bound name and loopback names, plus ``extra``;
    None (any) for a wildcard bind without ``extra`` or when ``extra`` holds ``*``."""
    if "*" in extra:
        return None
    try:
        wildcard = ipaddress.ip_address(bind).is_unspecified
    except ValueError:
        wildcard = bind in ("", "*")
    if wildcard and not extra:
        return None
    return frozenset({host_name(bind), *LOOPBACK_NAMES, *(host_name(h) for h in extra)})


class GuardMiddleware:
    """Host and same-site checks, the bearer token (all routes but ``public``) and the request-body limit."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        max_body_bytes: int,
        public: Collection[str],
        allowed_hosts: frozenset[str] | None,
    ) -> None:
        self.app = app
        self.token = token
        self.max_body = max_body_bytes
        self.public = frozenset(public)
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge(f"request body exceeds the limit of {self.max_body} bytes")
            return message

        length = headers.get("content-length")
        if length is not None and int(length) > self.max_body:
            msg = f"request body of {length} bytes exceeds the limit of {self.max_body} bytes"
            await error_response("LimitExceededError", msg, 413)(scope, receive, send_with_headers)
            return
        await self.app(scope, counted, send_with_headers)

    def _refusal(self, scope: Scope) -> JSONResponse | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        if self.allowed_hosts is not None and host_name(host) not in self.allowed_hosts:
            return error_response(
                "HostNotAllowed",
                f"this server does not answer to the host {host[:100]!r} (vecclf serve --allowed-host NAME adds one)",
                403,
            )
        method, path = scope.get("method", "GET"), scope.get("path", "")
        site, mode = headers.get("sec-fetch-site"), headers.get("sec-fetch-mode")
        origin = headers.get("origin")
        navigation = method == "GET" and mode == "navigate" and path in self.public
        cross_site = site in ("cross-site", "same-site") and not navigation
        if origin is not None and method not in SAFE_METHODS:
            cross_site |= (
                origin == "null"
                or host_name(urlsplit(origin).netloc or origin) != host_name(host)
                or (_port(urlsplit(origin).netloc, urlsplit(origin).scheme) != _port(host, scope.get("scheme", "http")))
            )
        if cross_site:
            return error_response(
                "CrossSiteRequest", "requests from other web sites are refused (use the page this server serves)", 403
            )
        if self.token and path not in self.public:
            scheme, _, supplied = headers.get("authorization", "").strip().partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(supplied.strip().encode(), self.token.encode()):
                return error_response(
                    "Unauthorized", "missing or wrong bearer token", 401, {"WWW-Authenticate": "Bearer"}
                )
        length = headers.get("content-length")
        if length is not None and not (length.isascii() and length.isdigit()):
            return error_response("InvalidInputError", "bad Content-Length header", 400)
        return None


def _port(authority: str, scheme: str) -> int | None:
    """The port of a ``host[:port]`` authority (the scheme's default when none is written)."""
    tail = authority.rsplit("]", 1)[-1]
    if ":" in tail:
        digits = tail.rsplit(":", 1)[1]
        return int(digits) if digits.isdigit() else None
    return {"http": 80, "https": 443}.get(scheme)
