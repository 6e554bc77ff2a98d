"""HTTP API: ``create_app()`` builds a Starlette app over one store.

Resources live in the lifespan state (no globals). Model and store work runs in worker
threads; concurrent embedding requests are coalesced into one model call by
:class:`MicroBatcher`; writes go through one asyncio lock. Every error is JSON
``{"error": {"type", "message"}}`` with a 4xx status for bad input.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hmac
import json
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__
from .classifier import METHODS, ConceptClassifier
from .config import Limits
from .errors import InvalidInputError, LimitExceededError, NotFoundError, ReadOnlyError, VecclfError
from .inputs import VIDEO_SUFFIXES, Item, decode_image, decode_video, make_text

log = logging.getLogger("vecclf.server")


@dataclass(frozen=True)
class ServerLimits:
    """Request-level limits (input decoding limits come from :class:`Limits`)."""

    max_body_bytes: int = 64 * 1024 * 1024
    max_json_depth: int = 16
    max_files: int = 64
    max_texts: int = 1024
    max_k: int = 1000


def _error(kind: str, message: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status, headers=headers)


class BodyTooLarge(LimitExceededError):
    """The request body is larger than the server accepts."""


# The page holds no data (it asks for the token and sends it with every API call).
PUBLIC_PATHS = frozenset({"/healthz", "/"})
_PAGE = Path(__file__).parent / "web" / "index.html"


# ---------------------------------------------------------------------------- middleware
class LimitAndAuthMiddleware:
    """Bearer-token check (all routes but :data:`PUBLIC_PATHS`) and request-body size limit, as plain ASGI."""

    def __init__(self, app: ASGIApp, *, token: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.token = token
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.token and scope.get("path") not in PUBLIC_PATHS:
            supplied = headers.get("authorization", "")
            expected = f"Bearer {self.token}"
            if not hmac.compare_digest(supplied.encode(), expected.encode()):
                resp = _error("Unauthorized", "missing or wrong bearer token", 401, {"WWW-Authenticate": "Bearer"})
                await resp(scope, receive, send)
                return
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                await _error("InvalidInputError", "bad Content-Length header", 400)(scope, receive, send)
                return
            if int(length) > self.max_body:
                msg = f"request body of {length} bytes exceeds the limit of {self.max_body} bytes"
                await _error("LimitExceededError", msg, 413)(scope, receive, send)
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


# ---------------------------------------------------------------------------- batching
class MicroBatcher:
    """Coalesce concurrent single-item calls into one batched call run in a worker thread.

    Requests arriving while a batch runs (or within ``max_wait`` of the first) share the
    next call, so many clients cost one model forward instead of many.
    """

    def __init__(self, fn: Callable[[list[Any]], np.ndarray], *, max_batch: int = 64, max_wait: float = 0.002) -> None:
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._pending: list[tuple[Any, asyncio.Future[np.ndarray]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, item: Any) -> np.ndarray:
        """Queue one item; resolves to its row of the batched result."""
        fut: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        return await fut

    async def _run(self) -> None:
        await asyncio.sleep(self.max_wait)
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            try:
                out = await run_in_threadpool(self.fn, [item for item, _ in batch])
            except Exception as exc:  # every waiter gets the error (a VecclfError becomes a 4xx)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for row, (_, fut) in zip(out, batch):
                if not fut.done():
                    fut.set_result(row)


# ---------------------------------------------------------------------------- request parsing
def _depth(obj: Any) -> int:
    depth, frontier = 0, [obj]
    while frontier:
        depth += 1
        nxt: list[Any] = []
        for o in frontier:
            if isinstance(o, dict):
                nxt += list(o.values())
            elif isinstance(o, list):
                nxt += o
        frontier = nxt
    return depth


async def _json(request: Request, limits: ServerLimits) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        raise InvalidInputError("empty request body; send a JSON object")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"invalid JSON: {exc}") from exc
    except RecursionError as exc:
        raise InvalidInputError("JSON nested too deeply") from exc
    if not isinstance(body, dict):
        raise InvalidInputError("the request body must be a JSON object")
    if _depth(body) > limits.max_json_depth:
        raise InvalidInputError(f"JSON nested deeper than {limits.max_json_depth} levels")
    return body


def _opt(body: dict[str, Any], key: str, kind: type, default: Any = None) -> Any:
    value = body.get(key, default)
    if value is None:
        return default
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise InvalidInputError(f"{key!r} must be an integer")
    if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise InvalidInputError(f"{key!r} must be a number")
    if kind in (str, list) and not isinstance(value, kind):
        raise InvalidInputError(f"{key!r} must be a {'string' if kind is str else 'list'}")
    return value


def _names(body: dict[str, Any], key: str) -> list[str]:
    values = _opt(body, key, list, [])
    if not all(isinstance(v, str) for v in values):
        raise InvalidInputError(f"{key!r} must be a list of strings")
    return list(values)


def _bounded(body: dict[str, Any], key: str, default: int, upper: int, lower: int = 1) -> int:
    value = int(_opt(body, key, int, default))
    if not lower <= value <= upper:
        raise InvalidInputError(f"{key!r} must be between {lower} and {upper}")
    return value


def _path_id(request: Request) -> int:
    """The ``{input_id}`` of the route, refused unless it is a positive 64-bit integer."""
    raw = request.path_params["input_id"]
    if not raw.isdigit() or len(raw) > 19:
        raise InvalidInputError("input id must be a positive 64-bit integer")
    return int(raw)


def _b64(value: Any, limits: Limits) -> bytes:
    if not isinstance(value, str):
        raise InvalidInputError("'image_base64' must be a string")
    if len(value) > limits.max_image_bytes * 4 // 3 + 4:
        raise LimitExceededError("'image_base64' exceeds the image size limit")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError(f"'image_base64' is not valid base64: {exc}") from exc


async def _upload_items(files: Sequence[UploadFile], limits: Limits) -> list[Item]:
    """Decode uploaded images (in memory) and videos (through a temporary file)."""
    items: list[Item] = []
    for up in files:
        name = Path(up.filename or "upload").name
        data = await up.read()
        if Path(name).suffix.lower() in VIDEO_SUFFIXES or (up.content_type or "").startswith("video/"):
            if len(data) > limits.max_video_bytes:
                raise LimitExceededError(f"{name}: video larger than {limits.max_video_bytes} bytes")
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / (name if Path(name).suffix else "upload.mp4")
                path.write_bytes(data)
                video = await run_in_threadpool(decode_video, path, limits=limits)
            items.append(dataclasses.replace(video, source=name))
        else:
            items.append(await run_in_threadpool(decode_image, data, source=name, limits=limits))
    return items


@dataclass
class Parsed:
    """A request's inputs and options, whichever encoding it came in."""

    items: list[Item]
    stored_id: int | None
    body: dict[str, Any]


async def _parse(request: Request, clf: ConceptClassifier, limits: ServerLimits, *, allow_id: bool) -> Parsed:
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        try:
            async with request.form(max_files=limits.max_files, max_fields=256) as form:
                files = [v for v in form.getlist("file") if isinstance(v, UploadFile)]
                if not files:
                    raise InvalidInputError("multipart requests need at least one 'file' field")
                body: dict[str, Any] = {}
                for key in ("concept", "negative"):
                    body[key + "s"] = [v for v in form.getlist(key) if isinstance(v, str)]
                for key in ("method", "k", "top", "faces"):
                    value = form.get(key)
                    if isinstance(value, str):
                        body[key] = int(value) if key in ("k", "top") and value.isdigit() else value
                if body["concepts"]:
                    body["concept"] = body["concepts"][0]
                items = await _upload_items(files, clf.limits)
        except HTTPException as exc:
            raise InvalidInputError(f"bad multipart body: {exc.detail}") from exc
        return Parsed(items, None, body)
    if ctype and not ctype.startswith("application/json"):
        raise InvalidInputError(f"unsupported content type {ctype!r}; send application/json or multipart/form-data")
    body = await _json(request, limits)
    items = []
    texts = _opt(body, "texts", list, [])
    if len(texts) > limits.max_texts:
        raise LimitExceededError(f"at most {limits.max_texts} texts per request")
    if "text" in body:
        texts = [_opt(body, "text", str), *texts]
    for n, t in enumerate(texts):
        if not isinstance(t, str):
            raise InvalidInputError("texts must be strings")
        items.append(make_text(t, source=f"<text {n}>", limits=clf.limits))
    if body.get("image_base64") is not None:
        data = _b64(body["image_base64"], clf.limits)
        items.append(await run_in_threadpool(decode_image, data, source="<image_base64>", limits=clf.limits))
    stored = None
    if allow_id and body.get("id") is not None:
        stored = int(_opt(body, "id", int))
    given = len(items) + (stored is not None)
    if given == 0:
        expected = "'text', 'texts', 'image_base64'" + (" or 'id'" if allow_id else "")
        raise InvalidInputError(f"give one of {expected} (or upload a 'file' as multipart)")
    if stored is not None and items:
        raise InvalidInputError("give either 'id' or new inputs, not both")
    return Parsed(items, stored, body)


# ---------------------------------------------------------------------------- app
def create_app(
    store: str | Path,
    *,
    token: str | None = None,
    read_only: bool = False,
    limits: ServerLimits | None = None,
    classifier: ConceptClassifier | None = None,
) -> Starlette:
    """Build the API over the store at ``store`` (opened at startup, closed at shutdown).

    ``token`` (default ``$VECCLF_TOKEN``) requires ``Authorization: Bearer <token>`` on every
    route but ``/healthz``. ``classifier`` serves an already-open store instead (tests, embedding).
    """
    lim = limits or ServerLimits()
    secret = token if token is not None else os.environ.get("VECCLF_TOKEN") or None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        clf: ConceptClassifier = (
            classifier
            if classifier is not None
            else await run_in_threadpool(ConceptClassifier.open, store, read_only=read_only)
        )
        await run_in_threadpool(lambda: clf.embedder)  # load the model before the first request
        emb = clf.embedder
        state = {
            "clf": clf,
            "write_lock": asyncio.Lock(),
            "texts": MicroBatcher(lambda xs: emb.embed_texts(xs)),
            "images": MicroBatcher(lambda xs: emb.embed_images(xs)),
        }
        try:
            yield state
        finally:
            if classifier is None:
                await run_in_threadpool(clf.close)

    async def vectors(request: Request, parsed: Parsed) -> list[tuple[str, str, np.ndarray]]:
        """Embed query items: texts and images through the micro-batchers, videos as the classifier does."""
        clf: ConceptClassifier = request.state.clf
        faces = _opt(parsed.body, "faces", str, "largest")
        out = []
        for it in await run_in_threadpool(clf.prepare_queries, parsed.items, faces):
            if hasattr(it, "text"):
                vec = await request.state.texts.submit(it.text)
                out.append((it.source, clf.embedder.space_of("text"), vec))
            elif hasattr(it, "image"):
                vec = await request.state.images.submit(it.image)
                out.append((it.source, clf.embedder.space_of("image"), vec))
            else:  # a video: its frames are one batch already
                out += await run_in_threadpool(clf.embed_items, [it])
        return out

    async def healthz(request: Request) -> Response:
        clf: ConceptClassifier = request.state.clf
        count = await run_in_threadpool(clf.store.count)
        return JSONResponse({"status": "ok", "version": __version__, "vectors": count})

    async def concepts(request: Request) -> Response:
        return JSONResponse({"concepts": await run_in_threadpool(request.state.clf.concepts)})

    async def add_inputs(request: Request) -> Response:
        clf: ConceptClassifier = request.state.clf
        parsed = await _parse(request, clf, lim, allow_id=False)
        pos, neg = _names(parsed.body, "concepts"), _names(parsed.body, "negatives")
        async with request.state.write_lock:
            report = await run_in_threadpool(clf.add_items, parsed.items, pos, neg)
        return JSONResponse(report.to_dict(), status_code=201)

    async def delete_input(request: Request) -> Response:
        input_id = _path_id(request)
        async with request.state.write_lock:
            removed = await run_in_threadpool(request.state.clf.delete, [input_id])
        return JSONResponse({"deleted": removed})

    async def predict(request: Request) -> Response:
        clf: ConceptClassifier = request.state.clf
        parsed = await _parse(request, clf, lim, allow_id=True)
        method = _opt(parsed.body, "method", str, "auto")
        if method not in METHODS:
            raise InvalidInputError(f"'method' must be one of {', '.join(METHODS)}")
        k = _bounded(parsed.body, "k", clf.k, lim.max_k)
        top = _bounded(parsed.body, "top", 5, 100)
        if parsed.stored_id is not None:
            preds = await run_in_threadpool(clf.predict_stored, [parsed.stored_id], method=method, k=k, top=top)
        else:
            preds = []
            for source, space, vec in await vectors(request, parsed):
                preds += await run_in_threadpool(
                    clf.predict_vectors, space, vec[None, :], method=method, k=k, top=top, sources=[source]
                )
        return JSONResponse({"predictions": [p.to_dict() for p in preds]})

    async def search(request: Request) -> Response:
        clf: ConceptClassifier = request.state.clf
        parsed = await _parse(request, clf, lim, allow_id=True)
        k = _bounded(parsed.body, "k", 10, lim.max_k)
        concept = _opt(parsed.body, "concept", str)
        if parsed.stored_id is not None:
            queries = [await run_in_threadpool(clf.store.vector, parsed.stored_id)]
        else:
            queries = [(space, vec) for _, space, vec in await vectors(request, parsed)]
        results = []
        for space, vec in queries:
            hits = await run_in_threadpool(clf.search_vectors, space, vec[None, :], k=k, concept=concept)
            results.append([h.to_dict() for h in hits[0]])
        return JSONResponse({"results": results})

    async def train(request: Request) -> Response:
        clf: ConceptClassifier = request.state.clf
        body = await _json(request, lim) if await request.body() else {}
        mode = _opt(body, "mode", str, "auto")
        C = float(_opt(body, "C", float, 10.0))
        if not (C > 0 and np.isfinite(C)):
            raise InvalidInputError("'C' must be a positive number")
        async with request.state.write_lock:
            summary = await run_in_threadpool(lambda: clf.train(mode=mode, C=C))
        return JSONResponse({"trained": summary})

    async def verify(request: Request) -> Response:
        clf: ConceptClassifier = request.state.clf
        parsed = await _parse(request, clf, lim, allow_id=False)
        concept = _opt(parsed.body, "concept", str)
        if not concept:
            raise InvalidInputError("'concept' is required")
        faces = _opt(parsed.body, "faces", str, "largest")
        out = await run_in_threadpool(clf.verify_items, parsed.items, concept=concept, faces=faces)
        return JSONResponse({"verifications": out})

    async def thumbnail(request: Request) -> Response:
        input_id = _path_id(request)
        jpeg = await run_in_threadpool(request.state.clf.store.thumbnail, input_id)
        if jpeg is None:
            raise NotFoundError(f"input {input_id} has no thumbnail (texts have none, or it does not exist)")
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    async def evaluation(request: Request) -> Response:
        report = await run_in_threadpool(request.state.clf.latest_evaluation)
        if report is None:
            raise NotFoundError("no evaluation yet: POST /evaluate or run `vecclf eval`")
        return JSONResponse(report)

    async def evaluate(request: Request) -> Response:
        if read_only:
            raise ReadOnlyError("this server is read-only: run `vecclf eval` against the store instead")
        clf: ConceptClassifier = request.state.clf
        body = await _json(request, lim) if await request.body() else {}
        method = _opt(body, "method", str, "knn")
        if method not in ("knn", "head"):
            raise InvalidInputError("'method' must be knn or head")
        folds = _bounded(body, "folds", 5, 20, lower=2)
        async with request.state.write_lock:  # one evaluation at a time; it rewrites the report files
            await run_in_threadpool(lambda: clf.evaluate(method=method, folds=folds))
        return JSONResponse(await run_in_threadpool(clf.latest_evaluation))

    async def page(request: Request) -> Response:
        return Response(_PAGE.read_bytes(), media_type="text/html; charset=utf-8")

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_schema())

    async def on_vecclf_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, VecclfError)
        return _error(exc.kind, str(exc), exc.http_status)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error("HTTPError", str(exc.detail), exc.status_code)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return _error("InternalError", "internal error (logged on the server)", 500)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/concepts", concepts, methods=["GET"]),
        Route("/inputs", add_inputs, methods=["POST"]),
        Route("/inputs/{input_id}", delete_input, methods=["DELETE"]),
        Route("/predict", predict, methods=["POST"]),
        Route("/search", search, methods=["POST"]),
        Route("/train", train, methods=["POST"]),
        Route("/verify", verify, methods=["POST"]),
        Route("/inputs/{input_id}/thumbnail", thumbnail, methods=["GET"]),
        Route("/evaluation", evaluation, methods=["GET"]),
        Route("/evaluate", evaluate, methods=["POST"]),
        Route("/", page, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"], include_in_schema=False),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={VecclfError: on_vecclf_error, HTTPException: on_http_error, Exception: on_unexpected},
    )
    app.add_middleware(LimitAndAuthMiddleware, token=secret, max_body_bytes=lim.max_body_bytes)
    return app


# ---------------------------------------------------------------------------- OpenAPI
def openapi_schema() -> dict[str, Any]:
    """The OpenAPI 3.0 document for :func:`create_app`'s routes."""
    names = {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 200}}
    query_props: dict[str, Any] = {
        "text": {"type": "string", "minLength": 1},
        "texts": {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 1024},
        "image_base64": {"type": "string", "format": "byte"},
    }
    stored_id = {"id": {"type": "integer", "minimum": 1, "description": "query with a stored input's vector"}}
    error = {"$ref": "#/components/schemas/Error"}
    errors = {
        str(code): {"description": text, "content": {"application/json": {"schema": error}}}
        for code, text in (
            (400, "bad input"),
            (401, "missing or wrong bearer token"),
            (404, "not found"),
            (409, "conflict with the store's state"),
            (413, "too large"),
        )
    }

    def body(props: dict[str, Any], multipart: dict[str, Any] | None = None) -> dict[str, Any]:
        content: dict[str, Any] = {"application/json": {"schema": {"type": "object", "properties": props}}}
        if multipart is not None:
            content["multipart/form-data"] = {
                "schema": {"type": "object", "properties": multipart, "required": ["file"]}
            }
        return {"required": True, "content": content}

    def optional_json(props: dict[str, Any]) -> dict[str, Any]:
        return {
            "required": False,
            "content": {"application/json": {"schema": {"type": "object", "properties": props}}},
        }

    def ok(schema: dict[str, Any], code: str = "200") -> dict[str, Any]:
        return {code: {"description": "ok", "content": {"application/json": {"schema": schema}}}, **errors}

    files = {"file": {"type": "array", "items": {"type": "string", "format": "binary"}}}
    faces = {"faces": {"type": "string", "enum": ["largest", "all"], "description": "faces stores: which faces"}}
    predict_props = {
        **query_props,
        **stored_id,
        **faces,
        "method": {"type": "string", "enum": list(METHODS)},
        "k": {"type": "integer", "minimum": 1, "maximum": 1000},
        "top": {"type": "integer", "minimum": 1, "maximum": 100},
    }
    obj = {"type": "object"}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "vecclf",
            "version": __version__,
            "description": "Embedding classifier: k-NN, logistic head and zero-shot over a local store.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["type", "message"],
                            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
                        }
                    },
                },
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {
                "get": {
                    "summary": "liveness (no token needed)",
                    "security": [],
                    "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": obj}}}},
                }
            },
            "/concepts": {"get": {"summary": "concepts with example counts", "responses": ok(obj)}},
            "/inputs": {
                "post": {
                    "summary": "add texts, a base64 image, or uploaded images/videos with concept labels",
                    "requestBody": body(
                        {**query_props, "concepts": names, "negatives": names},
                        {**files, "concept": names, "negative": names},
                    ),
                    "responses": ok(obj, "201"),
                }
            },
            "/inputs/{input_id}": {
                "delete": {
                    "summary": "delete an input (a video with its frames)",
                    "parameters": [
                        {
                            "name": "input_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer", "minimum": 1},
                        }
                    ],
                    "responses": ok(obj),
                }
            },
            "/predict": {
                "post": {
                    "summary": "classify inputs (or a stored input by id)",
                    "requestBody": body(
                        predict_props, {**files, **faces, "method": {"type": "string", "enum": list(METHODS)}}
                    ),
                    "responses": ok(obj),
                }
            },
            "/search": {
                "post": {
                    "summary": "most similar stored inputs; 'concept' filters before ranking",
                    "requestBody": body(
                        {
                            **query_props,
                            **stored_id,
                            **faces,
                            "k": {"type": "integer", "minimum": 1, "maximum": 1000},
                            "concept": {"type": "string"},
                        }
                    ),
                    "responses": ok(obj),
                }
            },
            "/train": {
                "post": {
                    "summary": "train the logistic head",
                    "requestBody": optional_json(
                        {
                            "mode": {"type": "string", "enum": ["auto", "exclusive", "multilabel"]},
                            "C": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
                        }
                    ),
                    "responses": ok(obj),
                }
            },
            "/inputs/{input_id}/thumbnail": {
                "get": {
                    "summary": "an input's JPEG thumbnail (images and videos)",
                    "parameters": [
                        {
                            "name": "input_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer", "minimum": 1},
                        }
                    ],
                    "responses": {
                        "200": {"description": "ok", "content": {"image/jpeg": {"schema": {"type": "string"}}}},
                        **errors,
                    },
                }
            },
            "/evaluation": {"get": {"summary": "the latest evaluation report", "responses": ok(obj)}},
            "/evaluate": {
                "post": {
                    "summary": "evaluate the stored examples (LOO k-NN or k-fold head) and keep the report",
                    "requestBody": optional_json(
                        {
                            "method": {"type": "string", "enum": ["knn", "head"]},
                            "folds": {"type": "integer", "minimum": 2, "maximum": 20},
                        }
                    ),
                    "responses": ok(obj),
                }
            },
            "/verify": {
                "post": {
                    "summary": "1:1 verification of inputs against one concept",
                    "requestBody": body(
                        {**query_props, **faces, "concept": {"type": "string", "minLength": 1}},
                        {**files, **faces, "concept": {"type": "string"}},
                    ),
                    "responses": ok(obj),
                }
            },
        },
    }
