"""What each route does, given its validated :class:`~vecclf.server.parsing.Call`.

Handlers run model and store work in worker threads, off the event loop; query inputs are embedded
through the app's micro-batchers, so concurrent requests share model calls.
"""

from __future__ import annotations

from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..classifier import ConceptClassifier
from ..config import VERSION
from ..embed import Embedded
from ..errors import InvalidInputError, NotFoundError
from ..inputs import Failure
from ..labels import MAX_ID
from .batching import results_of
from .parsing import Call

PAGE = Path(__file__).resolve().parent.parent / "web" / "index.html"


def _clf(request: Request) -> ConceptClassifier:
    clf: ConceptClassifier = request.state.clf
    return clf


async def _embedded(request: Request, call: Call) -> tuple[list[Embedded], list[Failure]]:
    """The request's inputs embedded (``faces: all`` splits photos into faces), through the micro-batcher, and
    those that failed (to decode or to embed: a photo without a face, say), each on its own. When nothing is
    left to answer, the first failure is the request's error."""
    split = call.values.get("faces") == "all"
    embedded, failed = results_of(await request.state.batchers[split].submit(call.items))
    failures = call.failures + failed
    if not embedded and failures:
        raise failures[0].error if failures[0].error is not None else InvalidInputError(failures[0].reason)
    return embedded, failures


def _failures(failures: list[Failure]) -> list[dict[str, str]]:
    return [{"source": f.source, "reason": f.reason} for f in failures]


async def healthz(request: Request, call: Call) -> Response:
    count = await run_in_threadpool(_clf(request).store.count)
    return JSONResponse({"status": "ok", "version": VERSION, "vectors": count})


async def concepts(request: Request, call: Call) -> Response:
    return JSONResponse({"concepts": await run_in_threadpool(_clf(request).concepts)})


async def add_inputs(request: Request, call: Call) -> Response:
    clf, v = _clf(request), call.values
    report = await run_in_threadpool(
        lambda: clf.add_items(
            [*call.failures, *call.items], v["concepts"], v["negatives"], keep_duplicates=v["keep_duplicates"]
        )
    )
    if report.failures and not (report.added or report.duplicates):
        first = report.failures[0]
        raise first.error if first.error is not None else InvalidInputError(first.reason)
    return JSONResponse(report.to_dict(), status_code=201)


async def set_threshold(request: Request, call: Call) -> Response:
    clf, v = _clf(request), call.values
    await run_in_threadpool(clf.set_threshold, v["name"], v["threshold"])
    return JSONResponse({"concept": v["name"], "threshold_set": v["threshold"]})


async def clear_threshold(request: Request, call: Call) -> Response:
    clf, v = _clf(request), call.values
    await run_in_threadpool(clf.set_threshold, v["name"], None)
    return JSONResponse({"concept": v["name"], "threshold_set": None})


async def rename_concept(request: Request, call: Call) -> Response:
    clf, v = _clf(request), call.values
    await run_in_threadpool(clf.rename_concept, v["name"], v["new_name"])
    return JSONResponse({"renamed": {"from": v["name"], "to": v["new_name"]}})


async def delete_concept(request: Request, call: Call) -> Response:
    clf, v = _clf(request), call.values
    outcome = await run_in_threadpool(lambda: clf.delete_concept(v["name"], with_inputs=v["with_inputs"]))
    return JSONResponse({"deleted": v["name"], **outcome})


async def list_inputs(request: Request, call: Call) -> Response:
    clf, v = _clf(request), call.values
    page, total = await run_in_threadpool(
        lambda: clf.inputs(concept=v["concept"], kind=v["kind"], limit=v["limit"], after=v["cursor"])
    )
    more = len(page) == v["limit"] and page and page[-1]["id"] < MAX_ID
    return JSONResponse({"inputs": page, "total": total, "next_cursor": page[-1]["id"] if more else None})


async def get_input(request: Request, call: Call) -> Response:
    clf = _clf(request)
    return JSONResponse(await run_in_threadpool(clf.input, call.values["input_id"]))


async def delete_input(request: Request, call: Call) -> Response:
    removed = await run_in_threadpool(_clf(request).delete, [call.values["input_id"]])
    return JSONResponse({"deleted": removed})


async def predict(request: Request, call: Call) -> Response:
    clf, v = _clf(request), call.values
    options = {"method": v["method"], "k": v["k"], "top": v["top"], "unknown_quantile": v["unknown_quantile"]}
    stored, failures = call.stored_id, list[Failure]()
    if stored is not None:
        preds = await run_in_threadpool(lambda: clf.predict_stored([stored], **options))
    else:
        embedded, failures = await _embedded(request, call)
        preds = await run_in_threadpool(lambda: clf.predict_embedded(embedded, **options))
    return JSONResponse({"predictions": [p.to_dict() for p in preds], "failures": _failures(failures)})


async def search(request: Request, call: Call) -> Response:
    clf, v = _clf(request), call.values
    failures: list[Failure] = []
    collapse = v["collapse"]
    if call.stored_id is not None:
        space, vec = await run_in_threadpool(clf.store.vector, call.stored_id)
        queries = [f"id:{call.stored_id}"]
        hits = await run_in_threadpool(
            lambda: clf.search_vectors(space, vec[None, :], k=v["k"], concept=v["concept"], collapse=collapse)
        )
    else:
        embedded, failures = await _embedded(request, call)
        queries = [e.item.source for e in embedded]
        hits = await run_in_threadpool(
            lambda: clf.search_embedded(embedded, k=v["k"], concept=v["concept"], collapse=collapse)
        )
    return JSONResponse(
        {"results": [[h.to_dict() for h in row] for row in hits], "queries": queries, "failures": _failures(failures)}
    )


async def train(request: Request, call: Call) -> Response:
    clf, v = _clf(request), call.values
    summary = await run_in_threadpool(lambda: clf.train(mode=v["mode"], C=v["C"]))
    return JSONResponse({"trained": summary})


async def verify(request: Request, call: Call) -> Response:
    embedded, failures = await _embedded(request, call)
    clf, v = _clf(request), call.values
    out = await run_in_threadpool(
        lambda: clf.verify_embedded(embedded, concept=v["concept"], unknown_quantile=v["unknown_quantile"])
    )
    return JSONResponse({"verifications": out, "failures": _failures(failures)})


async def thumbnail(request: Request, call: Call) -> Response:
    input_id = call.values["input_id"]
    jpeg = await run_in_threadpool(_clf(request).store.thumbnail, input_id)
    if jpeg is None:
        raise NotFoundError(f"input {input_id} has no thumbnail (texts have none, or it does not exist)")
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


async def evaluation(request: Request, call: Call) -> Response:
    report = await run_in_threadpool(_clf(request).latest_evaluation)
    if report is None:
        raise NotFoundError("no evaluation yet: POST /evaluate or run `vecclf eval`")
    return JSONResponse(report)


async def evaluate(request: Request, call: Call) -> Response:
    clf, v = _clf(request), call.values
    await run_in_threadpool(lambda: clf.evaluate(method=v["method"], folds=v["folds"]))
    return JSONResponse(await run_in_threadpool(clf.latest_evaluation))


async def page(request: Request, call: Call) -> Response:
    return Response(PAGE.read_bytes(), media_type="text/html; charset=utf-8")
