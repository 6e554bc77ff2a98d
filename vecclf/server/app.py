"""``create_app()``: the Starlette app over one store, built from the route table.

Resources live in the lifespan state (no globals): the classifier, one write lock and the
micro-batchers. Each route's request is validated against its fields before its handler runs; writes
are refused by read-only servers before any work and run one at a time. Every error is JSON
``{"error": {"type", "message"}}`` with a 4xx status for bad input.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..classifier import ConceptClassifier
from ..classify.openset import check_quantile
from ..config import ServerLimits
from ..embed import embed_items
from ..errors import InvalidInputError, ReadOnlyError, VecclfError
from ..inputs import Item
from .batching import MicroBatcher, Results
from .middleware import LOOPBACK_NAMES, GuardMiddleware, error_response, host_name
from .openapi import document
from .parsing import Call, read_call
from .routes import Endpoint, endpoints

log = logging.getLogger("vecclf.server")


def _path_values(request: Request, ep: Endpoint) -> dict[str, Any]:
    out = {}
    for f in ep.path_fields:
        raw = request.path_params[f.name]
        if f.kind == "integer":
            if not (raw.isascii() and raw.isdigit()) or len(raw) > 19:
                raise InvalidInputError(f"{f.name.replace('_', ' ')} must be a positive 64-bit integer")
            out[f.name] = f.check(int(raw))
        else:
            out[f.name] = f.check(raw)
    return out


def _route(ep: Endpoint, limits: ServerLimits, read_only: bool) -> Route:
    async def endpoint(request: Request) -> Response:
        clf: ConceptClassifier = request.state.clf
        if ep.writes and (read_only or clf.store.read_only):
            raise ReadOnlyError(f"this server is read-only: {ep.method} {ep.path} is refused")
        values = _path_values(request, ep)
        for f in ep.query:
            values[f.name] = f.read_form(request.query_params)
        call = Call(values, [])
        if ep.body_fields:
            call = await read_call(
                request,
                ep.body_fields,
                limits=limits,
                input_limits=clf.limits,
                body_required=ep.body_required,
                form_fields=ep.form,
            )
            call.values.update(values)
        if ep.writes:
            async with request.state.write_lock:
                return await ep.handler(request, call)
        return await ep.handler(request, call)

    return Route(ep.path, endpoint, methods=[ep.method])


def create_app(
    store: str | Path,
    *,
    token: str | None = None,
    read_only: bool = False,
    limits: ServerLimits | None = None,
    classifier: ConceptClassifier | None = None,
    unknown_quantile: float | None = None,
    allowed_hosts: Collection[str] | None = None,
) -> Starlette:
    """Build the API over the store at ``store`` (opened at startup, closed at shutdown).

    ``token`` (default ``$VECCLF_TOKEN``) requires ``Authorization: Bearer <token>`` on every
    route but ``/healthz`` and the page. ``classifier`` serves an already-open store instead (tests, embedding).
    ``unknown_quantile``: the open-set default for this server (a request may give its own).
    ``allowed_hosts``: the ``Host`` names it answers (default: loopback names only; ``"*"``: any). Requests a
    browser sends from another web site are refused either way (see :mod:`vecclf.server.middleware`).
    """
    lim = limits or ServerLimits()
    secret = token if token is not None else os.environ.get("VECCLF_TOKEN") or None
    table = endpoints(lim)
    spec = document(table)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        clf: ConceptClassifier = (
            classifier
            if classifier is not None
            else await run_in_threadpool(ConceptClassifier.open, store, read_only=read_only)
        )
        if unknown_quantile is not None:
            clf.unknown_quantile = check_quantile(unknown_quantile)
        emb = await run_in_threadpool(lambda: clf.embedder)  # load the model before the first request

        def embedding(split: bool) -> Callable[[list[Item]], Results]:
            return lambda items: embed_items(emb, items, split=split).per_input

        batchers = {split: MicroBatcher(embedding(split)) for split in (False, True)}
        try:
            yield {"clf": clf, "write_lock": asyncio.Lock(), "batchers": batchers}
        finally:
            if classifier is None:
                await run_in_threadpool(clf.close)

    async def openapi(request: Request) -> Response:
        return JSONResponse(spec)

    def told(message: str, request: Request) -> str:
        """An error message as a client may see it: no paths of this machine (the store's, temporary ones)."""
        clf: ConceptClassifier | None = getattr(request.state, "clf", None)
        places = [tempfile.gettempdir()]
        if clf is not None:
            places += [str(clf.store.path.resolve()), str(clf.store.path)]
        for place in sorted(set(places), key=len, reverse=True):
            message = message.replace(place, "<store>" if place != tempfile.gettempdir() else "<tmp>")
        return message

    async def on_vecclf_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, VecclfError)
        return error_response(exc.kind, told(str(exc), request), exc.http_status)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response("HTTPError", told(str(exc.detail), request), exc.status_code)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response("InternalError", "internal error (logged on the server)", 500)

    routes = [_route(ep, lim, read_only) for ep in table]
    routes.append(Route("/openapi.json", openapi, methods=["GET"], include_in_schema=False))
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={VecclfError: on_vecclf_error, HTTPException: on_http_error, Exception: on_unexpected},
    )
    public = {ep.path for ep in table if ep.public}
    hosts = (
        None
        if allowed_hosts is not None and "*" in allowed_hosts
        else frozenset({*LOOPBACK_NAMES, *(host_name(h) for h in (allowed_hosts or ()))})
    )
    app.add_middleware(
        GuardMiddleware, token=secret, max_body_bytes=lim.max_body_bytes, public=public, allowed_hosts=hosts
    )
    return app
