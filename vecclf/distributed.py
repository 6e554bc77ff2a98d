"""Batch work on Ray Data: embedding files and tables to Parquet, and classifying a dataset to Parquet.

The pipeline is Ray's, not ours: the driver lists the work (files by path, texts by value), CPU tasks
decode it (bounded, as ``vecclf add`` decodes), an actor pool that holds the embedder embeds it with the
same batched :func:`~vecclf.embed.embed_items` (one actor per GPU, in fp16, when the cluster has GPUs), and
the workers write Parquet shards in the layout of :mod:`vecclf.exchange`. Classification broadcasts a
read-only snapshot of the store once (``ray.put``); each actor opens it and answers with the store's
own predictor, so a head, k-NN votes and open-set thresholds are those of ``vecclf predict``.

Without an address a local Ray runtime is started (and stopped) for the command; with one, the command
joins that cluster. Ray is an optional dependency: ``pip install "vecclf[ray]"``.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .config import Limits
from .embed import input_side
from .errors import InvalidInputError, ModalityError, VecclfError
from .exchange import header, is_parquet, parquet_files, read_header, row_schema, rows_table
from .inputs import (
    TABLE_SUFFIXES,
    TEXT_SUFFIXES,
    Failure,
    concept_folders,
    decode_texts,
    expand_paths,
    load_media,
    read_text_table,
    shown,
    text_file_items,
)
from .labels import check_concept_name

DECODE_BATCH = 16
# Decode tasks ask for less than the embedder's CPU: Ray fuses a task stage into the actor stage after it when
# both ask for the same resources, which decoded every batch inside the one actor, in turn with the model.
DECODE_CPUS = 0.5
EMBED_BATCH = 64


def _ray() -> Any:
    # Ray Data's own lines (execution finished, sink written, progress bars off) would drown the command's;
    # its errors still show, and RAY_DATA_LOG_LEVEL set by the user wins
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")
    try:
        import ray
    except ImportError as exc:
        raise InvalidInputError('this command runs on Ray: pip install "vecclf[ray]" (or "ray[data]")') from exc
    return ray


@contextmanager
def runtime(address: str | None = None) -> Iterator[Any]:
    """Ray, initialised: joined to the cluster at ``address``, or a local runtime for this command (one
    already initialised in this process is used as it is)."""
    ray = _ray()
    for name in ("ray", "ray.data"):  # Ray's own progress and statistics lines would drown the command's
        logging.getLogger(name).setLevel(logging.WARNING)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    if ray.is_initialized():
        with _typed_errors():
            yield ray
        return
    try:
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise InvalidInputError(f"cannot reach a Ray cluster at {address!r}: {exc}") from exc
    try:
        with _typed_errors():
            yield ray
    finally:
        ray.shutdown()


@contextmanager
def _typed_errors() -> Iterator[None]:
    """A vecclf error raised in a Ray task comes out as itself, not wrapped in Ray's exceptions (a refusal
    stays one line)."""
    try:
        yield
    except Exception as exc:
        ours: VecclfError | None = None
        seen: set[int] = set()
        at: BaseException | None = exc
        while at is not None and id(at) not in seen:  # the innermost: Ray's wrappers may subclass the cause
            seen.add(id(at))
            if isinstance(at, VecclfError):
                ours = at
            at = getattr(at, "cause", None) or at.__cause__
        if ours is None or ours is exc:
            raise
        raise ours from None


def plan(
    paths: Sequence[str | Path],
    *,
    texts: Sequence[str] = (),
    concepts: Sequence[str] = (),
    text_column: str | None = None,
    label_column: str | None = None,
    folders: bool = False,
    limits: Limits | None = None,
) -> tuple[list[dict[str, Any]], list[Failure]]:
    """The work as rows: a media file by absolute path, a text (a ``.txt`` line, a table row, ``--text``) by
    value, each with its concepts (``concepts`` for all; a table's label column per row; with ``folders``, the
    subfolder a file is in); and what could not be listed."""
    limits = limits or Limits()
    given = [check_concept_name(c) for c in concepts]
    rows: list[dict[str, Any]] = []
    failures: list[Failure] = []

    def text_row(source: str, text: str, labels: list[str]) -> dict[str, Any]:
        return {"source": source, "path": "", "text": text, "concepts": labels}  # "" not None: Ray makes None NaN

    listed: list[tuple[Path | Failure, list[str]]] = []
    for path in paths:
        if folders and Path(path).is_dir():  # a folder per concept, as `vecclf import FOLDER` reads it
            for name, files in concept_folders(Path(path)):
                concept = check_concept_name(name)
                listed += [(f, [*given, concept]) for f in files]
        else:
            listed += [(f, given) for f in expand_paths([path])]
    for p, labels in listed:
        if isinstance(p, Failure):
            failures.append(p)
            continue
        p = p.absolute()
        suffix = p.suffix.lower()
        if suffix in TEXT_SUFFIXES:
            for it in text_file_items(p, limits=limits):
                if isinstance(it, Failure):
                    failures.append(it)
                else:
                    rows.append(text_row(it.source, it.text, labels))
        elif suffix in TABLE_SUFFIXES:
            try:
                table = read_text_table(p, text_column=text_column, label_column=label_column, limits=limits)
            except (InvalidInputError, OSError) as exc:
                failures.append(Failure(shown(p), f"{shown(p)}: {exc}", exc))
                continue
            for n, text, label in table:
                rows.append(text_row(f"{shown(p)}:{n}", text, labels + ([check_concept_name(label)] if label else [])))
        else:
            rows.append({"source": shown(p), "path": str(p), "text": "", "concepts": labels})
    for n, text in enumerate(texts):
        rows.append(text_row(f"<text {n}>", text, given))
    return rows, failures


def _decode(batch: dict[str, Any], limits: Limits, draft: int | None) -> dict[str, Any]:
    """CPU task: each row decoded to an item (pickled: our own objects, inside our own pipeline) or an error."""
    items: list[bytes | None] = []
    errors: list[str | None] = []
    for source, path, text in zip(batch["source"], batch["path"], batch["text"]):
        try:
            if isinstance(path, str) and path:
                item: Any = load_media(Path(path), limits=limits, draft=draft)
            else:
                item = next(decode_texts([(str(source), str(text))], limits=limits))
                if isinstance(item, Failure):
                    raise InvalidInputError(item.reason)
            items.append(pickle.dumps(item))
            errors.append(None)
        except (VecclfError, OSError) as exc:
            items.append(None)
            errors.append(str(exc))
    return {**batch, "item": np.array(items, dtype=object), "error": np.array(errors, dtype=object)}


def _device_for(gpus: float) -> str | None:
    return "cuda" if gpus else None


def _use_threads(threads: int) -> None:
    """Give torch, FAISS and numpy's BLAS (the store's exact search) ``threads`` threads in the calling thread
    (FAISS's OpenMP setting is per thread; BLAS's is per process)."""
    import faiss
    import torch
    from threadpoolctl import threadpool_limits

    threads = max(1, min(threads, os.cpu_count() or 1))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    global _blas_threads
    if _blas_threads != threads:  # once per process, not per batch: BLAS's setting is the process's
        threadpool_limits(limits=threads, user_api="blas")
        _blas_threads = threads


_blas_threads = 0


class _Actor:
    """A Ray actor that answers batches with its share of the CPUs. Ray starts workers with
    ``OMP_NUM_THREADS=1`` (an actor reserves one CPU) and calls an actor from a thread other than the one that
    built it, which had embedding and search on one thread, about half the single-machine commands' speed. The
    pool sizes one actor per ``threads`` CPUs, so the reservation stays small and decode tasks fit beside it."""

    threads = 1

    def __call__(self, batch: Any) -> Any:
        _use_threads(self.threads)
        return self.answer(batch)

    def answer(self, batch: Any) -> Any:
        """One batch's output table."""
        raise NotImplementedError


class _Embed(_Actor):
    """Ray actor: the embedder, loaded once; batches of decoded items to rows of the exchange layout."""

    def __init__(self, spec: dict[str, Any], head: dict[str, Any], device: str | None, threads: int) -> None:
        from .embed import load_embedder

        self.threads = threads
        _use_threads(threads)
        self.embedder = load_embedder(spec, **({"device": device} if device else {}))
        self.head = head
        self.rng = np.random.default_rng()

    def answer(self, batch: Any) -> Any:
        import pyarrow as pa

        from .embed import embed_items
        from .ingest import rows

        todo = [(n, pickle.loads(b)) for n, b in enumerate(batch["item"]) if b is not None]
        done = embed_items(self.embedder, [it for _, it in todo])
        new: list[Any] = []
        failed: list[tuple[str, str]] = [
            (str(s), str(e)) for s, e, b in zip(batch["source"], batch["error"], batch["item"]) if b is None
        ]
        for (n, _), result in zip(todo, done.per_input):
            if isinstance(result, Failure):
                failed.append((str(batch["source"][n]), result.reason))
                continue
            concepts = tuple(str(c) for c in batch["concepts"][n])
            for embedded in result:
                new += rows(embedded, concepts, (), at=len(new))
        ids = self.rng.integers(1, 2**62, size=len(new)).tolist()
        table = rows_table(new, ids, self.head)
        if failed:
            schema = row_schema(self.head)
            bad = {f.name: pa.nulls(len(failed), f.type) for f in schema}
            bad["source"] = pa.array([s for s, _ in failed], pa.string())
            bad["error"] = pa.array([e for _, e in failed], pa.string())
            table = pa.concat_tables([table, pa.Table.from_pydict(bad, schema=schema)])
        return table


def _pool(ray: Any, actors: int | None) -> tuple[int, float, int]:
    """``(actors, GPUs per actor, threads per actor)``: one actor per GPU when the cluster has GPUs, else about
    one per two CPUs; each actor's threads are its share of the cluster's CPUs."""
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
    n = actors or (gpus if gpus else max(1, cpus // 2))
    return n, 1.0 if gpus else 0.0, max(1, cpus // n)


def _embed_on(
    ray: Any,
    work: list[dict[str, Any]],
    target: Path,
    embedder: Any,
    head: dict[str, Any],
    actors: int | None,
    limits: Limits,
) -> tuple[int, float, int]:
    """The embedding pipeline, run to its Parquet shards; returns ``(actors, GPUs per actor, threads)``."""
    n_actors, gpus, threads = _pool(ray, actors)
    draft = getattr(embedder, "input_size", None)
    ds = ray.data.from_items(work, override_num_blocks=max(1, min(len(work) // DECODE_BATCH, 64)))
    ds = ds.map_batches(
        _decode, batch_size=DECODE_BATCH, fn_kwargs={"limits": limits, "draft": draft}, num_cpus=DECODE_CPUS
    )
    ds = ds.map_batches(
        _Embed,
        fn_constructor_kwargs={"spec": embedder.spec, "head": head, "device": _device_for(gpus), "threads": threads},
        batch_size=EMBED_BATCH,
        compute=ray.data.ActorPoolStrategy(size=n_actors),
        num_gpus=gpus,
    )
    ds.write_parquet(str(target))
    return n_actors, gpus, threads


def embed_to_parquet(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    model: str | dict[str, Any],
    texts: Sequence[str] = (),
    concepts: Sequence[str] = (),
    text_column: str | None = None,
    label_column: str | None = None,
    folders: bool = False,
    address: str | None = None,
    actors: int | None = None,
    limits: Limits | None = None,
) -> dict[str, Any]:
    """Embed files, folders, ``.txt`` files and tables (and ``texts``) on Ray into Parquet shards under ``out``;
    returns a summary (rows written, failures)."""
    import pyarrow.parquet as pq

    from .embed import load_embedder, parse_model

    target = Path(out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InvalidInputError(f"{target} is not an empty folder: write the shards into a new one")
    limits = limits or Limits()
    spec = parse_model(model) if isinstance(model, str) else dict(model)  # a bad name fails here, before Ray
    with ThreadPoolExecutor(1) as pool:
        loading = pool.submit(load_embedder, spec, device="cpu")  # for its identity, as Ray starts beside it
        work, failures = plan(
            paths,
            texts=texts,
            concepts=concepts,
            text_column=text_column,
            label_column=label_column,
            folders=folders,
            limits=limits,
        )
        if not work:
            raise InvalidInputError("nothing to embed: " + (failures[0].reason if failures else "no inputs given"))
        with runtime(address) as ray:
            embedder = loading.result()
            head = header(embedder.spec, embedder.identity, embedder.spaces())
            n_actors, gpus, threads = _embed_on(ray, work, target, embedder, head, actors, limits)
    written, errors = 0, []
    for f in parquet_files(target):
        table = pq.read_table(f, columns=["source", "error"])
        for source, error in zip(table.column("source").to_pylist(), table.column("error").to_pylist()):
            if error is None:
                written += 1
            else:
                errors.append({"source": source, "reason": error})
    errors += [{"source": f.source, "reason": f.reason} for f in failures]
    return {
        "out": str(target.absolute()),
        "rows": written,
        "failures": errors,
        "actors": n_actors,
        "gpus": gpus,
        "threads": threads,
    }


def _snapshot(store_path: Path) -> bytes:
    """The store's files as a tar archive (its lock and reader notes left out), taken while it is open
    read-only here, so no writer can change it meanwhile."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for f in sorted(store_path.iterdir()):
            if f.is_file() and f.name != "store.lock":
                tar.add(f, arcname=f.name)
    return buf.getvalue()


class _Predict(_Actor):
    """Ray actor: a read-only copy of the store, unpacked once; batches of vectors or decoded items answered."""

    def __init__(self, snapshot: list[Any], options: dict[str, Any], threads: int) -> None:
        import ray

        from .classifier import ConceptClassifier

        self.threads = threads
        _use_threads(threads)
        self.dir = tempfile.mkdtemp(prefix="vecclf-snapshot-")
        with tarfile.open(fileobj=io.BytesIO(ray.get(snapshot[0]))) as tar:
            tar.extractall(self.dir, filter="data")
        self.clf = ConceptClassifier.open(self.dir, read_only=True)  # the embedder picks the GPU itself
        self.options = options

    def answer(self, batch: Any) -> Any:
        import pyarrow as pa

        from .results import failure_row, prediction_row, results_schema

        out: list[dict[str, Any]] = []
        o = self.options
        if isinstance(batch, pa.Table):  # precomputed vectors, from Parquet (a row not embedded: its failure)
            out = self._answer_vectors(batch)
        else:
            items = [pickle.loads(b) if b is not None else Failure(str(s), str(e)) for s, e, b in
                     zip(batch["source"], batch["error"], batch["item"])]  # fmt: skip
            try:
                stream = self.clf.predict_stream(
                    items, method=o["method"], k=o["k"], top=o["top"], unknown_quantile=o["unknown_quantile"]
                )
                out = [failure_row(r) if isinstance(r, Failure) else prediction_row(r) for r in stream]
            except VecclfError as exc:  # the store cannot answer this batch (a space without examples)
                out = [failure_row(Failure(str(s), str(exc))) for s in batch["source"]]
        return pa.Table.from_pylist(out, schema=results_schema())

    def _answer_vectors(self, batch: Any) -> list[dict[str, Any]]:
        """Rows of precomputed vectors (an Arrow batch: the vectors read as one array per space, not per row)."""
        from .exchange import vector_rows
        from .results import failure_row, prediction_row

        o, spaces = self.options, self.clf.store.spaces
        sources = [str(s) for s in batch.column("source").to_pylist()]
        space_of = batch.column("space").to_pylist()
        errors = batch.column("error").to_pylist() if "error" in batch.schema.names else [None] * len(sources)
        order: dict[int, dict[str, Any]] = {
            i: failure_row(Failure(sources[i], str(e))) for i, e in enumerate(errors) if e is not None
        }
        for space in sorted({str(s) for i, s in enumerate(space_of) if i not in order}):
            at = [i for i, s in enumerate(space_of) if str(s) == space and i not in order]
            name = f"vector_{space}"
            found = (
                vector_rows(batch.column(name).combine_chunks(), spaces[space])
                if space in spaces and name in batch.schema.names
                else []
            )
            good = [i for i in at if found and isinstance(found[i], np.ndarray)]
            for i in sorted(set(at) - set(good)):
                reason = (
                    f"no {spaces[space]}-d finite vector in {name}"
                    if space in spaces
                    else f"space {space!r} not in the store"
                )
                order[i] = failure_row(Failure(sources[i], reason))
            if not good:
                continue
            try:
                preds = self.clf.predict_vectors(
                    space, np.stack([found[i] for i in good]), method=o["method"], k=o["k"], top=o["top"],
                    sources=[sources[i] for i in good], unknown_quantile=o["unknown_quantile"],
                )  # fmt: skip
            except VecclfError as exc:  # this space cannot be answered (no examples in it): its rows fail
                order.update((i, failure_row(Failure(sources[i], str(exc)))) for i in good)
                continue
            order.update((i, prediction_row(p)) for i, p in zip(good, preds))
        return [order[i] for i in sorted(order)]


def _check_answerable(clf: Any, options: dict[str, Any]) -> None:
    """Refuse, before Ray starts, a job that no row could be answered in: bad options, no labelled examples,
    no head for ``--method head``. A store that answers in one space only goes on (the rows of others fail)."""
    refusals: list[VecclfError] = []
    for space, dim in clf.store.spaces.items():
        try:
            clf.predict_vectors(space, np.empty((0, dim), np.float32), **options)
        except VecclfError as exc:
            refusals.append(exc)
    if len(refusals) == len(clf.store.spaces):
        raise min(refusals, key=lambda e: isinstance(e, ModalityError))  # the store-wide reason first


def predict_to_parquet(
    store_path: str | Path,
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    method: str = "auto",
    k: int | None = None,
    top: int = 3,
    unknown_quantile: float | None = None,
    address: str | None = None,
    actors: int | None = None,
    limits: Limits | None = None,
) -> dict[str, Any]:
    """Classify a dataset on Ray: Parquet rows with vectors (``vecclf embed`` output) or files and tables,
    answered by the store's classifier; results written as Parquet shards (the columns of ``predict --out``)."""
    import pyarrow.parquet as pq

    from .classifier import ConceptClassifier

    target = Path(out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InvalidInputError(f"{target} is not an empty folder: write the results into a new one")
    options = {"method": method, "k": k, "top": top, "unknown_quantile": unknown_quantile}
    with ConceptClassifier.open(store_path, read_only=True) as clf:
        store = clf.store
        vectors = [p for p in paths if is_parquet(p)]
        if vectors and len(vectors) != len(paths):
            raise InvalidInputError("give either Parquet files of vectors or files to embed, not both")
        if vectors:
            from .exchange import check_columns, check_compatible

            heads = [read_header(p) for p in vectors]
            for head in heads:
                check_compatible(head, store)
            # one column set for every file (Ray reads them as one dataset); a missing error column: all embedded
            used = {"spaces": {s: d for head in heads for s, d in head["spaces"].items()}}
            optional = set.intersection(*(set(check_columns(p, used, ("source", "space"))) for p in vectors))
            columns = [
                "source",
                "space",
                *sorted(optional & {"error"}),
                *(f"vector_{s}" for s in sorted(used["spaces"])),
            ]
        _check_answerable(clf, options)
        snapshot = _snapshot(Path(store.path))
        draft = input_side(store.spec) if not vectors else None  # not clf.embedder: no model in the driver
    with runtime(address) as ray:
        n_actors, gpus, threads = _pool(ray, actors)
        if vectors:
            files = [str(f) for p in vectors for f in parquet_files(p)]
            ds = ray.data.read_parquet(files, columns=columns)
        else:
            work, failures = plan(paths, limits=limits)
            if not work:
                raise InvalidInputError("nothing to predict: " + (failures[0].reason if failures else "no inputs"))
            ds = ray.data.from_items(work, override_num_blocks=max(1, min(len(work) // DECODE_BATCH, 64)))
            ds = ds.map_batches(
                _decode, batch_size=DECODE_BATCH, fn_kwargs={"limits": limits or Limits(), "draft": draft}
            )
        ref = ray.put(snapshot)  # broadcast once: every actor reads the same object
        ds = ds.map_batches(
            _Predict,
            fn_constructor_kwargs={"snapshot": [ref], "options": options, "threads": threads},
            batch_size=1024 if vectors else EMBED_BATCH,
            batch_format="pyarrow" if vectors else "numpy",
            compute=ray.data.ActorPoolStrategy(size=n_actors),
            num_gpus=gpus,
        )
        ds.write_parquet(str(target))
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in parquet_files(target))
    return {"out": str(target.absolute()), "rows": rows, "actors": n_actors, "gpus": gpus, "threads": threads}
