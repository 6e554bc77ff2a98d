"""What each ``vecclf`` command does with its parsed options; each returns the exit status.

Exit statuses: 0 done (some inputs may have failed: they are listed), 1 the store or the model could not be
used, 2 bad usage or input (nothing could be done), 3 ``verify``: an input was not verified.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..config import default_store_path
from ..errors import IndexSaveError, InvalidInputError
from ..inputs import Failure, Item, count_inputs, decode_paths, decode_texts
from ..results import failure_row, prediction_row
from .output import (
    ResultWriter,
    emit,
    failures_json,
    model_line,
    progress,
    report_failures,
    said,
    warn,
)

Options = argparse.Namespace
NOTHING_ANSWERED = 2


def store_path(o: Options) -> Path:
    """The store the command works on."""
    return Path(o.store) if o.store else default_store_path()


@contextmanager
def opened(o: Options, *, read_only: bool = False) -> Iterator[Any]:
    """The store's classifier; a failed index save at close is a warning (every write is in the database and
    the index is rebuilt from it at the next open), so what the command reports stays true."""
    from ..classifier import ConceptClassifier

    clf = ConceptClassifier.open(store_path(o), read_only=read_only)
    try:
        yield clf
    finally:
        try:
            clf.close()
        except IndexSaveError as exc:
            warn(f"warning: {exc}")


def _query_items(clf: Any, o: Options) -> Iterator[Item | Failure]:
    draft = getattr(clf.embedder, "input_size", None)
    yield from decode_paths(o.paths, limits=clf.limits, draft=draft, tables=True, text_column=o.text_column)
    yield from decode_texts(((f"<text {n}>", t) for n, t in enumerate(o.text)), limits=clf.limits)


def _need_queries(o: Options) -> int:
    if not o.paths and not o.text:
        raise InvalidInputError("give PATH... and/or --text TEXT")
    return count_inputs(o.paths, tables=True) + len(o.text)


def _counted(items: Iterator[Item | Failure], tick: Callable[[int], None]) -> Iterator[Item | Failure]:
    for it in items:
        tick(1)
        yield it


def _outcome(answered: int, failures: list[Failure]) -> int:
    report_failures(failures, "failed")
    if failures and not answered:
        first = failures[0]
        warn(f"error: nothing could be answered ({said(first)})")
        return NOTHING_ANSWERED
    return 0


# ---------------------------------------------------------------------------------------------- writing
def init(o: Options) -> int:
    from ..classifier import ConceptClassifier

    with ConceptClassifier.create(store_path(o), o.model, checkpoint=o.checkpoint, index=o.index) as clf:
        info = clf.info()
    dims = ", ".join(f"{s} {v['dim']}-d" for s, v in info["spaces"].items())
    emit(
        o.json, info, lambda: print(f"created a store at {info['path']}\nmodel {model_line(info['embedder'])}: {dims}")
    )
    return 0


def _finish_add(o: Options, report: Any) -> int:
    def human() -> None:
        print(f"added {len(report.added)} input(s) ({report.embedded} embedded, {report.cached} from the cache)")

    emit(o.json, report.to_dict(), human)
    report_failures(report.failures)
    if report.duplicates:
        warn(
            f"{len(report.duplicates)} input(s) already stored (same content or vector): their labels were merged "
            "into the stored ones, not stored again (--keep-duplicates stores them)"
        )
    if report.error:
        warn(f"error: stopped part way: {report.error} (the inputs listed as added were stored; the rest were not)")
        return 1
    if report.failures and not (report.added or report.duplicates):
        first = report.failures[0]
        warn(f"error: nothing added ({said(first)})")
        return NOTHING_ANSWERED
    if not (report.added or report.duplicates):
        warn("error: nothing to add: the paths held no images, videos or texts")
        return NOTHING_ANSWERED
    return 0


def add(o: Options) -> int:
    if not o.paths and not o.text:
        raise InvalidInputError("give PATH... and/or --text TEXT")
    total = count_inputs(o.paths) + len(o.text)
    with opened(o) as clf, progress("adding", total) as bar:
        report = clf.add(o.paths, o.concept, o.negative, progress=bar, keep_duplicates=o.keep_duplicates)
        if o.text:
            more = clf.add_texts(o.text, o.concept, o.negative, progress=bar, keep_duplicates=o.keep_duplicates)
            report.merge(more)
    return _finish_add(o, report)


def import_(o: Options) -> int:
    from .. import exchange

    if exchange.is_parquet(o.source):
        return _import_parquet(o)
    total = count_inputs([o.source], tables=True)
    with opened(o) as clf, progress("importing", total) as bar:
        report = clf.import_path(
            o.source,
            text_column=o.text_column,
            label_column=o.label_column,
            limit_per_concept=o.limit_per_concept,
            progress=bar,
            keep_duplicates=o.keep_duplicates,
        )
    return _finish_add(o, report)


def _import_parquet(o: Options) -> int:
    from .. import exchange
    from ..store import Store

    path = store_path(o)
    if not (path / "store.duckdb").exists():  # a store for the files' model, as `init` would make it
        exchange.store_from(o.source, path).close()
        warn(f"created store {path} for the model the Parquet files name")
    with Store.open(path) as store, progress("importing", exchange.count_rows(o.source), unit="row") as bar:
        report = exchange.import_parquet(store, o.source, progress=bar, keep_duplicates=o.keep_duplicates)
    return _finish_add(o, report)


def export(o: Options) -> int:
    from .. import exchange

    with opened(o, read_only=True) as clf, progress("exporting", clf.store.count(), unit="row") as bar:
        manifest = exchange.export_store(clf.store, o.out, progress=bar)
    emit(o.json, manifest, lambda: print(f"exported {sum(manifest['rows'].values())} row(s) to {o.out}"))
    return 0


def embed(o: Options) -> int:
    from ..distributed import embed_to_parquet

    if not o.paths and not o.text:
        raise InvalidInputError("give PATH... and/or --text TEXT")
    summary = embed_to_parquet(
        o.paths,
        o.out,
        model=o.model,
        texts=o.text,
        concepts=o.concept,
        text_column=o.text_column,
        label_column=o.label_column,
        folders=o.folders,
        address=o.ray,
        actors=o.actors,
    )
    emit(o.json, summary, lambda: print(f"embedded {summary['rows']} input(s) into {summary['out']}"))
    report_failures([Failure(f["source"], f["reason"]) for f in summary["failures"]])
    return 0 if summary["rows"] else NOTHING_ANSWERED


def _predict_on_ray(o: Options) -> int:
    from ..distributed import predict_to_parquet

    if o.out is None:
        raise InvalidInputError("--ray writes Parquet shards: give --out FOLDER")
    if o.per_frame or o.faces == "all" or o.text:
        raise InvalidInputError(
            "--ray answers one row per input from files or Parquet: drop --per-frame/--faces/--text"
        )
    summary = predict_to_parquet(
        store_path(o),
        o.paths,
        o.out,
        method=o.method,
        k=o.k,
        top=o.top,
        unknown_quantile=o.unknown_quantile,
        address=o.ray or None,
        actors=o.actors,
    )
    emit(o.json, summary, lambda: print(f"predicted {summary['rows']} row(s) into {summary['out']}"))
    return 0 if summary["rows"] else NOTHING_ANSWERED


def delete(o: Options) -> int:
    with opened(o) as clf:
        removed = clf.delete(o.ids)
    missing = sorted(set(o.ids) - set(removed))
    emit(o.json, {"deleted": removed, "not_found": missing}, lambda: print(f"deleted {len(removed)} input(s)"))
    if missing:
        warn(f"not found (nothing deleted for them): {', '.join(map(str, missing))}")
    return 0


def train(o: Options) -> int:
    with opened(o) as clf, progress("training", None, unit="space") as bar:
        summary = clf.train(mode=o.mode, C=o.C, device=o.device)
        bar(len(summary))

    def human() -> None:
        for space, s in summary.items():
            print(
                f"{space}: {s['mode']} head on {s['examples']} examples of {len(s['classes'])} concepts, "
                f"{s['iterations']} iterations, {s['seconds']} s"
            )

    emit(o.json, {"trained": summary}, human)
    return 0


# ---------------------------------------------------------------------------------------------- querying
def predict(o: Options) -> int:
    if o.ray is not None:
        return _predict_on_ray(o)
    total = _need_queries(o)
    split = o.faces == "all" or o.per_frame
    writer = ResultWriter(o.out) if o.out else None
    answered, failures, shown = 0, [], []
    try:
        with opened(o, read_only=True) as clf, progress("predicting", total) as bar:
            stream = clf.predict_stream(
                _counted(_query_items(clf, o), bar),
                method=o.method,
                k=o.k,
                top=o.top,
                split=split,
                unknown_quantile=o.unknown_quantile,
            )
            for result in stream:
                if isinstance(result, Failure):
                    failures.append(result)
                    if writer is not None:
                        writer.write(failure_row(result))
                    continue
                answered += 1
                if writer is not None:
                    writer.write(prediction_row(result))
                elif o.json:
                    shown.append(result.to_dict())
                else:
                    print(_prediction_line(result), flush=False)
    finally:
        if writer is not None:
            writer.close()
    if writer is not None:
        payload = {"out": str(o.out.absolute()), "rows": writer.rows, "answered": answered}
        emit(o.json, payload | {"failures": failures_json(failures)}, lambda: print(
            f"wrote {answered} answer(s) and {len(failures)} failure(s) to {o.out}"))  # fmt: skip
    elif o.json:
        emit(True, {"predictions": shown, "failures": failures_json(failures)}, lambda: None)
    return _outcome(answered, failures)


def _prediction_line(p: Any) -> str:
    detail = ", ".join(f"{c} {s:.3f}" for c, s in p.scores.items())
    extra = ""
    if p.concept == "unknown" and p.nearest:
        why = p.rejected_by or ""
        if p.rejected_by == "nearest-example":
            why = f"similarity {p.similarity} below threshold {p.threshold}"
        extra = f" (nearest {p.nearest}: {why})"
    stale = " (stale head: trained before the store last changed)" if p.stale else ""
    like = ""
    if p.neighbours and p.neighbours[0].get("text"):  # a text answer shows the example it is closest to
        text = p.neighbours[0]["text"]
        like = f'\tlike "{text[:60]}{"..." if len(text) > 60 else ""}"'
    return f"{p.source}\t{p.concept}{extra}\t[{detail}] via {p.method}{stale}{like}"


def search(o: Options) -> int:
    total = _need_queries(o)
    failures: list[Failure] = []
    queries: list[str] = []
    with opened(o, read_only=True) as clf, progress("searching", total) as bar:
        results = clf.search(
            (),
            k=o.k,
            concept=o.concept,
            split=o.faces == "all",
            failures=failures,
            queries=queries,
            collapse=not o.no_collapse,
            items=_counted(_query_items(clf, o), bar),
        )

    def human() -> None:
        for query, hits in zip(queries, results):
            if len(queries) > 1:
                print(f"{query}:")
            for h in hits:
                where = h.text if h.text else h.source
                if h.timestamp_s is not None:
                    where = f"{where} @ {h.timestamp_s}s"
                print(f"{h.id}\t{h.similarity:.4f}\t{','.join(h.concepts) or '-'}\t{where}")

    payload = {
        "results": [[h.to_dict() for h in hits] for hits in results],
        "queries": queries,
        "failures": failures_json(failures),
    }
    emit(o.json, payload, human)
    return _outcome(len(results), failures)


def verify(o: Options) -> int:
    total = _need_queries(o)
    failures: list[Failure] = []
    with opened(o, read_only=True) as clf, progress("verifying", total) as bar:
        results = clf.verify(
            (),
            concept=o.concept,
            split=o.faces == "all",
            unknown_quantile=o.unknown_quantile,
            failures=failures,
            items=_counted(_query_items(clf, o), bar),
        )

    def human() -> None:
        for r in results:
            verdict = "verified" if r["verified"] else "NOT verified"
            why = f" ({r['reason']})" if r["reason"] else f" (threshold {r['threshold']:.4f})"
            print(f"{r['source']}\t{verdict} as {r['concept']}: score {r['score']:.4f}{why}")

    emit(o.json, {"verifications": results, "failures": failures_json(failures)}, human)
    status = _outcome(len(results), failures)
    if status:
        return status
    return 0 if all(r["verified"] for r in results) else 3


def eval_(o: Options) -> int:
    if o.test is None and o.method not in ("knn", "head"):
        raise InvalidInputError("the stored examples evaluate with --method knn or head (--test takes any method)")
    for flag in ("text_column", "label_column"):
        if getattr(o, flag) and o.test is None:
            raise InvalidInputError(f"--{flag.replace('_', '-')} goes with --test")
    total = count_inputs([o.test], tables=True) if o.test is not None else None
    with opened(o, read_only=not o.apply) as clf, progress("evaluating", total) as bar:
        if o.unknown_quantile is not None:
            clf.unknown_quantile = o.unknown_quantile
        report = clf.evaluate(
            method=o.method,
            folds=o.folds,
            k=o.k,
            out_dir=o.out,
            test=o.test,
            text_column=o.text_column,
            label_column=o.label_column,
            progress=bar,
        )
        if o.apply:
            applied = {
                name: m["suggested_threshold"]
                for name, m in report["per_concept"].items()
                if m.get("suggested_threshold") is not None
            }
            for name, value in applied.items():
                clf.set_threshold(name, value)
            report["applied"] = applied

    def human() -> None:
        print(
            f"{report['method']} ({report['protocol']}) on {report['examples']} examples: "
            f"accuracy {report['accuracy']:.4f}, macro F1 {report['macro_f1']:.4f}"
        )
        if "unknown_rate" in report:
            print(f"answered unknown: {report['unknown_rate']:.4f}")
        for name, m in report["per_concept"].items():
            print(f"  {name}\tP {m['precision']:.3f}\tR {m['recall']:.3f}\tF1 {m['f1']:.3f}\tAUC {m['roc_auc']}")
        print("wrote " + ", ".join(report["files"].values()))
        if "applied" in report:
            print(f"set the suggested threshold of {len(report['applied'])} concept(s) (vecclf concepts shows them)")

    emit(o.json, report, human)
    if report.get("skipped"):
        warn(f"{report['skipped']} test input(s) could not be answered (listed under failures in --json)")
    return 0


# ---------------------------------------------------------------------------------------------- managing
def _threshold_value(text: str) -> float | None:
    if text == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise InvalidInputError(f"a threshold is a similarity between -1 and 1, or auto; got {text!r}") from None


USAGE = {
    "add": (lambda n: n >= 1, "vecclf concepts add NAME..."),
    "rename": (lambda n: n == 2, "vecclf concepts rename OLD NEW"),
    "delete": (lambda n: n == 1, "vecclf concepts delete NAME [--with-inputs]"),
    "threshold": (lambda n: n == 2, "vecclf concepts threshold NAME VALUE|auto"),
    "list": (lambda n: n == 0, "vecclf concepts [list]"),
}


def concepts(o: Options) -> int:
    fits, usage = USAGE[o.action]
    if not fits(len(o.names)):
        raise InvalidInputError(f"usage: {usage}")
    if o.with_inputs and o.action != "delete":
        raise InvalidInputError("--with-inputs goes with concepts delete")
    if o.action == "list":
        return _list_concepts(o)
    names = o.names
    with opened(o) as clf:
        if o.action == "threshold":
            value = _threshold_value(names[1])
            clf.set_threshold(names[0], value)
            payload: dict[str, Any] = {"concept": names[0], "threshold_set": value}
            line = f"{names[0]}: threshold {value}" if value is not None else f"{names[0]}: the learned threshold"
        elif o.action == "add":
            clf.add_concepts(names)
            payload = {"created": names}
            line = f"created {len(names)} concept(s): {', '.join(names)}"
        elif o.action == "rename":
            clf.rename_concept(*names)
            payload = {"renamed": {"from": names[0], "to": names[1]}}
            line = f"renamed {names[0]} to {names[1]}"
        else:
            outcome = clf.delete_concept(names[0], with_inputs=o.with_inputs)
            payload = {"deleted": names[0], **outcome}
            line = f"deleted {names[0]}: {outcome['labels_removed']} label(s) removed"
            if o.with_inputs:
                line += f", {outcome['inputs_deleted']} input(s) deleted"
            elif outcome["left_unlabelled"]:
                line += (
                    f"; {outcome['left_unlabelled']} input(s) now have no label: they stay stored "
                    "(vecclf inputs lists them; --with-inputs would have deleted them)"
                )
    emit(o.json, payload, lambda: print(line))
    return 0


def _list_concepts(o: Options) -> int:
    with opened(o, read_only=True) as clf:
        found = clf.concepts()

    def human() -> None:
        if not found:
            print("no concepts yet (vecclf add --concept NAME, or vecclf concepts add NAME)")
        for c in found:
            if c["threshold_set"] is not None:
                threshold = f"threshold {c['threshold_set']} (set)"
            else:
                learned = [
                    f"{v:.4f}" + (f" ({s})" if len(c["thresholds"]) > 1 else "")
                    for s, v in c["thresholds"].items()
                    if v is not None
                ]
                threshold = f"threshold {', '.join(learned)} (learned)" if learned else "no threshold yet"
            print(f"{c['name']}\t{c['positives']} positive\t{c['negatives']} negative\t{threshold}")

    emit(o.json, {"concepts": found}, human)
    return 0


def inputs(o: Options) -> int:
    with opened(o, read_only=True) as clf:
        page, total = clf.inputs(concept=o.concept, kind=o.kind, limit=o.limit, offset=o.offset)

    def human() -> None:
        for r in page:
            what = r["text"] if r["kind"] == "text" else r["source"]
            print(f"{r['id']}\t{r['kind']}\t{','.join(r['concepts']) or '-'}\t{what}")
        first = o.offset + 1 if page else o.offset
        print(f"inputs {first}-{o.offset + len(page)} of {total}", file=sys.stderr)

    emit(o.json, {"inputs": page, "total": total, "offset": o.offset, "limit": o.limit}, human)
    return 0


def info(o: Options) -> int:
    with opened(o, read_only=True) as clf:
        found = clf.info()

    def human() -> None:
        print(f"store      {found['path']} (schema {found['schema_version']})")
        print(f"model      {model_line(found['embedder'])}")
        print(f"index      {found['index_kind']}")
        kinds = ", ".join(f"{n} {k}(s)" for k, n in sorted(found["inputs"].items())) or "none"
        print(f"inputs     {kinds}")
        print(f"concepts   {found['concepts']}")
        for space, s in found["spaces"].items():
            print(f"space      {space}: {s['vectors']} vectors of {s['dim']} dimensions, generation {s['generation']}")

    emit(o.json, found, human)
    return 0


# ---------------------------------------------------------------------------------------------- serving
def serve(o: Options) -> int:
    from ..server import create_app
    from ..server.middleware import allowed_hosts_for
    from ..server.serving import ConnectionLimits, bind
    from ..server.serving import serve as run

    token = os.environ.get("VECCLF_TOKEN") or None
    hosts = allowed_hosts_for(o.host, o.allowed_host)
    if not token and hosts is None:
        warn(f"warning: serving on {o.host} to any Host name without VECCLF_TOKEN: anyone who can reach it can write")
    try:
        sock = bind(o.host, o.port)
    except OSError as exc:
        raise InvalidInputError(f"cannot listen on {o.host}:{o.port}: {exc.strerror or exc}") from None
    with sock, opened(o, read_only=o.read_only) as clf:
        _ = clf.embedder  # a model that cannot load fails here, in one line, before the URL is printed
        clf.warm()  # indexes, labels and thresholds load in the background, not in the first request
        app = create_app(
            clf.store.path,
            token=token,
            read_only=o.read_only,
            classifier=clf,
            unknown_quantile=o.unknown_quantile,
            allowed_hosts=["*"] if hosts is None else sorted(hosts),
        )
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"vecclf: serving {clf.store.path} on http://{shown}:{port}/ (Ctrl+C stops)", flush=True)
        run(app, sock, ConnectionLimits(header_timeout=o.header_timeout))
    return 0


COMMANDS: dict[str, Callable[[Options], int]] = {
    "init": init,
    "add": add,
    "import": import_,
    "predict": predict,
    "search": search,
    "verify": verify,
    "train": train,
    "eval": eval_,
    "concepts": concepts,
    "inputs": inputs,
    "delete": delete,
    "serve": serve,
    "info": info,
    "embed": embed,
    "export": export,
}
