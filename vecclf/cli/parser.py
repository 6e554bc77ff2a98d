"""How ``vecclf`` reads its arguments: one parser per command, options anywhere (``--store`` before or after the
command, between paths), ``--`` before names that start with ``-``, every default shown in ``--help``, and
numeric bounds shared with the HTTP API."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..config import C_MAX, C_MIN, DEFAULT_C, DEFAULT_K, DEFAULT_TOP, METHODS, MODES, VERSION, ServerLimits
from ..embed.registry import DEFAULT_MODEL, PRESETS
from ..store.index import INDEX_KINDS

LIMITS = ServerLimits()


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not (text.strip().lstrip("-").isascii() and text.strip().lstrip("-").isdigit()):
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer")
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def _bounded_float(low: float, high: float, *, high_open: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < low or value > high or (high_open and value == high):
            bound = f"[{low:g}, {high:g}{')' if high_open else ']'}"
            raise argparse.ArgumentTypeError(f"must be a number in {bound}, got {text}")
        return value

    return parse


K = _bounded_int(1, LIMITS.max_k)
TOP = _bounded_int(1, LIMITS.max_top)
FOLDS = _bounded_int(2, LIMITS.max_folds)
QUANTILE = _bounded_float(0.0, 0.5, high_open=True)
C_VALUE = _bounded_float(C_MIN, C_MAX)
PORT = _bounded_int(0, 65535)
COUNT = _bounded_int(0, 2**62)
PAGE = _bounded_int(1, 1000)

UNKNOWN_QUANTILE = "share of in-scope answers the open-set thresholds are set to reject; 0: never unknown"
KEEP_DUPLICATES = "store inputs that are already stored (else only their labels merge into the stored ones)"
FACES = "faces stores: the largest face of each photo, or every face (one answer each)"


class Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows every default (but not ``None``/``False`` ones)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, [], argparse.SUPPRESS) or "%(default)" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action) or ""


def _command(name: str, help_text: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"vecclf {name}", description=help_text, formatter_class=Formatter)
    p.add_argument("--store", type=Path, help="store directory (else $VECCLF_STORE, else ./index_data)")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    return p


def _queries(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("paths", nargs="*", help=f"{what}: files or folders (.txt: a text per line; CSV/JSONL: a row each)")
    p.add_argument("--text", action="append", default=[], help="a text query (repeatable)")
    p.add_argument("--text-column", help="CSV/JSONL inputs: the column holding the text (default: text, sentence...)")
    p.add_argument("--faces", default="largest", choices=["largest", "all"], help=FACES)


def commands() -> dict[str, argparse.ArgumentParser]:
    """Every command's parser."""
    out: dict[str, argparse.ArgumentParser] = {}

    p = out["init"] = _command("init", "create a store for one embedding model")
    models = " | ".join(PRESETS)
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"{models} | any OpenCLIP MODEL[:PRETRAINED]")
    p.add_argument("--checkpoint", help="a local OpenCLIP checkpoint file (instead of downloading PRETRAINED)")
    p.add_argument(
        "--index", default="auto", choices=INDEX_KINDS, help="FAISS index: auto is exact, then IVF from 250k vectors"
    )

    p = out["add"] = _command("add", "add images, videos, folders or texts with their concepts")
    p.add_argument("paths", nargs="*", help="files or folders (.txt: one text per line)")
    p.add_argument("--text", action="append", default=[], help="a text input (repeatable)")
    p.add_argument("--concept", action="append", default=[], help="a positive concept (repeatable)")
    p.add_argument("--negative", action="append", default=[], help="a negative concept (repeatable)")
    p.add_argument("--keep-duplicates", action="store_true", help=KEEP_DUPLICATES)

    p = out["import"] = _command(
        "import", "import a folder per concept, a CSV/JSONL table of texts and labels, or Parquet vectors / an export"
    )
    p.add_argument(
        "source",
        help="a folder with one subfolder per concept, FILE.csv / FILE.jsonl, or Parquet (vecclf embed or export "
        "output: vectors are not embedded again; a missing store is created for their model)",
    )
    p.add_argument("--text-column", help="text column (default: the first of text/sentence/utterance/query)")
    p.add_argument("--label-column", help="label column (default: the first of label/category/concept/intent/class)")
    p.add_argument("--limit-per-concept", type=COUNT, help="take at most N examples of each concept")
    p.add_argument("--keep-duplicates", action="store_true", help=KEEP_DUPLICATES)

    p = out["predict"] = _command("predict", "classify inputs: one answer each (or one per face or video frame)")
    _queries(p, "inputs")
    p.add_argument("--method", default="auto", choices=METHODS, help="auto: a fresh head, else k-NN, else zero-shot")
    p.add_argument("--k", type=K, default=DEFAULT_K, help="neighbours that vote")
    p.add_argument("--top", type=TOP, default=DEFAULT_TOP, help="concept scores to show")
    p.add_argument("--unknown-quantile", type=QUANTILE, help=UNKNOWN_QUANTILE + " (default: the store's, 0.01)")
    p.add_argument("--per-frame", action="store_true", help="videos: an answer for each sampled frame, with its time")
    p.add_argument("--out", type=Path, help="write the answers to FILE.csv | .jsonl | .parquet, as they come")
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="run on Ray (a local runtime, or the cluster at ADDRESS); inputs may be Parquet vectors; --out is a folder",
    )
    p.add_argument("--actors", type=_bounded_int(1, 4096), help="--ray: predicting actors (default: one per GPU, "
                   "else one per two CPUs)")  # fmt: skip

    p = out["search"] = _command("search", "find the stored inputs most similar to each query")
    _queries(p, "queries")
    p.add_argument("--k", type=K, default=DEFAULT_K, help="results per query")
    p.add_argument("--concept", help="only inputs labelled with this concept (filtered before ranking)")
    p.add_argument("--no-collapse", action="store_true", help="list a video's matching frames as hits of their own")

    p = out["verify"] = _command("verify", "1:1: is each input this concept? (exit status 3 when one is not)")
    _queries(p, "inputs")
    p.add_argument("--concept", required=True, help="the concept (person) to verify against")
    p.add_argument("--unknown-quantile", type=QUANTILE, help=UNKNOWN_QUANTILE + " (default: the store's, 0.01)")

    p = out["train"] = _command("train", "train the logistic head from the stored examples")
    p.add_argument("--mode", default="auto", choices=MODES, help="auto: exclusive when each example has one concept")
    p.add_argument("--C", type=C_VALUE, default=DEFAULT_C, help="inverse L2 strength, as scikit-learn's")
    p.add_argument("--device", help="cpu | cuda (default: cuda when there is one)")

    p = out["eval"] = _command("eval", "evaluate: the stored examples (leave-one-out / k-fold) or a labelled test set")
    p.add_argument("--method", default="knn", choices=METHODS, help="knn | head (with --test: any method)")
    p.add_argument("--folds", type=FOLDS, default=5, help="folds for the head")
    p.add_argument("--k", type=K, default=DEFAULT_K, help="neighbours for k-NN")
    p.add_argument("--out", type=Path, help="report folder (default: STORE/evaluation)")
    p.add_argument("--test", type=Path, help="a held-out set: a folder per concept, or a CSV/JSONL with labels")
    p.add_argument("--text-column", help="--test table: text column")
    p.add_argument("--label-column", help="--test table: label column")
    p.add_argument("--unknown-quantile", type=QUANTILE, help=UNKNOWN_QUANTILE + " (default: the store's, 0.01)")
    p.add_argument("--apply", action="store_true", help="set each concept's threshold to the suggested one")

    p = out["concepts"] = _command("concepts", "list, add, rename or delete concepts, or set a concept's threshold")
    p.add_argument("action", nargs="?", default="list", choices=["list", "add", "rename", "delete", "threshold"])
    p.add_argument("names", nargs="*", help="add NAME... | rename OLD NEW | delete NAME | threshold NAME VALUE|auto")
    p.add_argument("--with-inputs", action="store_true", help="delete: the concept's inputs go too")

    p = out["inputs"] = _command("inputs", "list stored inputs, a page at a time")
    p.add_argument("--concept", help="only inputs labelled with this concept")
    p.add_argument("--kind", choices=["image", "text", "video"], help="only inputs of this kind")
    p.add_argument("--limit", type=PAGE, default=50, help="inputs per page")
    p.add_argument("--offset", type=COUNT, default=0, help="skip this many")

    p = out["delete"] = _command("delete", "delete inputs by id (a video with its frames)")
    p.add_argument("ids", nargs="+", type=_bounded_int(1, 2**63 - 1), help="input ids")

    p = out["serve"] = _command("serve", "serve the HTTP API and the web page")
    p.add_argument("--host", default="127.0.0.1", help="bind address (loopback only by default)")
    p.add_argument("--port", type=PORT, default=8000, help="port (0: any free one)")
    p.add_argument(
        "--read-only", action="store_true", help="refuse writes; several read-only servers may share a store"
    )
    p.add_argument("--unknown-quantile", type=QUANTILE, help=UNKNOWN_QUANTILE + " (requests may set their own)")
    p.add_argument(
        "--allowed-host", action="append", default=[], help="a Host name the server answers besides the bound ones"
    )
    p.add_argument(
        "--header-timeout", type=_bounded_float(0.1, 3600), default=10.0, help="seconds a client has to send headers"
    )

    p = out["embed"] = _command("embed", "embed files, folders and tables to Parquet on Ray, without a store")
    p.add_argument("paths", nargs="*", help="files or folders (.txt: a text per line; CSV/JSONL: a row each)")
    p.add_argument("--out", type=Path, required=True, help="a new folder for the Parquet shards")
    p.add_argument("--text", action="append", default=[], help="a text input (repeatable)")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"{models} | any OpenCLIP MODEL[:PRETRAINED]")
    p.add_argument("--concept", action="append", default=[], help="a concept for every input (repeatable)")
    p.add_argument("--text-column", help="CSV/JSONL inputs: the text column")
    p.add_argument("--label-column", help="CSV/JSONL inputs: a column of concept labels")
    p.add_argument("--folders", action="store_true", help="each folder holds one subfolder per concept (as import)")
    p.add_argument("--ray", metavar="ADDRESS", help="a Ray cluster to join (default: a local runtime)")
    p.add_argument("--actors", type=_bounded_int(1, 4096), help="embedding actors (default: one per GPU, else one "
                   "per two CPUs)")  # fmt: skip

    p = out["export"] = _command("export", "write the whole store to Parquet (backup, migration, batch jobs)")
    p.add_argument("--out", type=Path, required=True, help="a new folder")

    out["info"] = _command("info", "describe the store")
    return out


def top_parser(names: Sequence[str], helps: dict[str, str]) -> argparse.ArgumentParser:
    """``vecclf`` itself: the version, the global options and the list of commands."""
    listing = "\n".join(f"  {n:<9} {helps[n]}" for n in names)
    p = argparse.ArgumentParser(
        prog="vecclf",
        usage="vecclf [--store DIR] [--json] COMMAND [options]",
        description="Classify images, videos and texts by k-NN over a local store of embedded examples.",
        epilog=f"commands:\n{listing}\n\n`vecclf COMMAND --help` shows a command's options (each with its default).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"vecclf {VERSION}")
    p.add_argument("--store", type=Path, help="store directory (else $VECCLF_STORE, else ./index_data)")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    return p


def parse(argv: Sequence[str]) -> tuple[str, argparse.Namespace]:
    """``(command, options)`` from the arguments; ``--store``/``--json`` may come before the command too."""
    parsers = commands()
    helps = {name: p.description or "" for name, p in parsers.items()}
    top = top_parser(list(parsers), helps)
    args = list(argv)
    at = next(
        (i for i, a in enumerate(args) if a in parsers and not (i and args[i - 1] == "--store")),
        None,
    )
    if at is None:
        top.parse_args(args)  # --help, --version, or an error naming the missing command
        top.error("a command is required")
    before: Any = top.parse_args(args[:at])
    name = args[at]
    options = parsers[name].parse_intermixed_args(args[at + 1 :])
    options.store = options.store or before.store
    options.json = options.json or before.json
    return name, options


def usage_error(message: str) -> None:
    """A usage error in argparse's own form (exit status 2)."""
    print(f"vecclf: error: {message}", file=sys.stderr)
    raise SystemExit(2)
