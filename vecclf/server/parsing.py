"""Reading a request: a JSON body (depth-limited) or a multipart form, its declared fields validated, and its
inputs (texts, a base64 image, uploaded files) decoded within the input limits."""

from __future__ import annotations

import base64
import binascii
import json
import tempfile
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from ..config import Limits, ServerLimits
from ..errors import InvalidInputError, LimitExceededError
from ..inputs import VIDEO_SUFFIXES, Failure, Item, decode_image, decode_video, make_text
from .fields import Field

INPUT_FIELDS = ("text", "texts", "image_base64", "file", "id")
"""Fields that carry what a request is about rather than options."""


@dataclass
class Call:
    """A validated request: option values by field name, decoded inputs (and those that could not be decoded,
    each a failure of its own), or a stored input's id."""

    values: dict[str, Any]
    items: list[Item]
    stored_id: int | None = None
    failures: list[Failure] = field(default_factory=list)


def _kept(decoded: list[Item | Failure]) -> tuple[list[Item], list[Failure]]:
    """The items and the failures; when every input failed, the first failure's error is the request's."""
    items = [d for d in decoded if not isinstance(d, Failure)]
    failures = [d for d in decoded if isinstance(d, Failure)]
    if failures and not items:
        first = failures[0]
        raise first.error if first.error is not None else InvalidInputError(f"{first.source}: {first.reason}")
    return items, failures


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


async def read_json(request: Request, limits: ServerLimits, *, required: bool) -> dict[str, Any]:
    """The body as a JSON object (``{}`` when empty and not ``required``)."""
    raw = await request.body()
    if not raw:
        if required:
            raise InvalidInputError("empty request body; send a JSON object")
        return {}
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


def _b64(value: str, limits: Limits) -> bytes:
    if len(value) > limits.max_image_bytes * 4 // 3 + 4:
        raise LimitExceededError("'image_base64' exceeds the image size limit")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError(f"'image_base64' is not valid base64: {exc}") from exc


def upload_name(filename: str | None) -> str:
    """An uploaded file's name as it may be shown and stored: its last part only, no control characters, at most
    200 characters; ``upload`` when nothing is left."""
    name = Path((filename or "").replace("\\", "/")).name
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")[:200].strip()
    return name or "upload"


async def _upload_items(files: Sequence[UploadFile], limits: Limits) -> list[Item | Failure]:
    """Decode uploaded images (in memory) and videos (through a temporary file of a fixed name); a file that
    cannot be decoded is a failure of its own."""
    items: list[Item | Failure] = []
    for up in files:
        name = upload_name(up.filename)
        data = await up.read()
        suffix = Path(name).suffix.lower()
        try:
            if suffix in VIDEO_SUFFIXES or (up.content_type or "").startswith("video/"):
                if len(data) > limits.max_video_bytes:
                    raise LimitExceededError(f"{name}: video larger than {limits.max_video_bytes} bytes")
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / ("upload" + (suffix if suffix in VIDEO_SUFFIXES else ".mp4"))
                    path.write_bytes(data)
                    items.append(await run_in_threadpool(decode_video, path, limits=limits, source=name))
            else:
                items.append(await run_in_threadpool(decode_image, data, source=name, limits=limits))
        except InvalidInputError as exc:
            items.append(Failure(name, str(exc), exc))
    return items


async def read_call(
    request: Request,
    fields: Sequence[Field],
    *,
    limits: ServerLimits,
    input_limits: Limits,
    body_required: bool,
    form_fields: Sequence[Field] | None = None,
) -> Call:
    """Validate a request against its endpoint's ``fields`` (JSON) or ``form_fields`` (multipart).

    An endpoint with input fields needs at least one input; ``id`` (a stored input) excludes new inputs.
    """
    names = {f.name for f in fields}
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data") and form_fields is not None:
        try:
            async with request.form(max_files=limits.max_files, max_fields=256) as form:
                files = [v for v in form.getlist("file") if isinstance(v, UploadFile)]
                if not files:
                    raise InvalidInputError("multipart requests need at least one 'file' field")
                values = {f.name: f.read_form(form) for f in form_fields if f.name not in INPUT_FIELDS}
                uploads, failures = _kept(await _upload_items(files, input_limits))
        except HTTPException as exc:
            raise InvalidInputError(f"bad multipart body: {exc.detail}") from exc
        return Call(values, uploads, failures=failures)
    if ctype and not ctype.startswith("application/json"):
        accepted = "application/json" + (" or multipart/form-data" if form_fields is not None else "")
        raise InvalidInputError(f"unsupported content type {ctype!r}; send {accepted}")
    body = await read_json(request, limits, required=body_required)
    values = {f.name: f.read(body) for f in fields if f.name not in INPUT_FIELDS}
    by_name = {f.name: f for f in fields}
    decoded: list[Item | Failure] = []
    texts: list[str] = []
    if "text" in names and body.get("text") is not None:
        texts.append(by_name["text"].read(body))
    if "texts" in names:
        texts += by_name["texts"].read(body) or []
    for n, t in enumerate(texts):
        try:
            decoded.append(make_text(t, source=f"<text {n}>", limits=input_limits))
        except InvalidInputError as exc:
            decoded.append(Failure(f"<text {n}>", str(exc), exc))
    if "image_base64" in names and body.get("image_base64") is not None:
        data = _b64(by_name["image_base64"].read(body), input_limits)
        decoded.append(await run_in_threadpool(decode_image, data, source="<image_base64>", limits=input_limits))
    stored = by_name["id"].read(body) if "id" in names else None
    if names & set(INPUT_FIELDS):
        if not decoded and stored is None:
            expected = "'text', 'texts', 'image_base64'" + (" or 'id'" if "id" in names else "")
            raise InvalidInputError(f"give one of {expected} (or upload a 'file' as multipart)")
        if stored is not None and decoded:
            raise InvalidInputError("give either 'id' or new inputs, not both")
    items, failures = _kept(decoded)
    return Call(values, items, stored, failures)
