"""Running the app under uvicorn with bounds on what a connection may hold: request headers must arrive within
a deadline, idle keep-alive connections close, and the number of open connections is capped, so half-open
or slow clients cannot pin the server."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


@dataclass(frozen=True)
class ConnectionLimits:
    """Seconds and counts that bound each connection (see the module docstring)."""

    header_timeout: float = 10.0
    keep_alive: float = 5.0
    max_connections: int = 512  # beyond it a new connection is dropped, and a request on an open one gets 503


def guarded_protocol(limits: ConnectionLimits) -> type[H11Protocol]:
    """uvicorn's h11 protocol with the header deadline and the connection cap of ``limits``."""

    class GuardedH11Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                transport.abort()  # refused at once: nothing was read
                return
            self._arm()

        def _arm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(limits.header_timeout, self._headers_late)

        def _headers_late(self) -> None:
            waiting = self.cycle is None or self.cycle.response_complete  # no request being answered
            if waiting and not self.transport.is_closing():
                self.transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request's headers get their own deadline

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

    return GuardedH11Protocol


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (port 0: any free one); raises ``OSError`` as the OS says."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def serve(app: Any, sock: socket.socket, limits: ConnectionLimits | None = None) -> None:
    """Serve ``app`` on the bound ``sock`` until interrupted (a graceful shutdown of up to 10 s)."""
    import uvicorn

    lim = limits or ConnectionLimits()
    config = uvicorn.Config(
        app,
        http=guarded_protocol(lim),
        ws="none",
        lifespan="on",
        log_level="warning",
        timeout_keep_alive=int(max(1, lim.keep_alive)),
        limit_concurrency=lim.max_connections,
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run(sockets=[sock])
