"""The object users touch: an embedder, a store and a predictor over it.

Data flows one way: inputs are decoded (:mod:`vecclf.inputs`), embedded in batches (:mod:`vecclf.embed`),
written to or looked up in the store (:mod:`vecclf.store`) and answered by :mod:`vecclf.classify`.
:class:`ConceptClassifier` only wires these together.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .classify.head import HeadWeights
from .classify.openset import Calibration
from .classify.predictor import Hit, Prediction, Predictor
from .classify.training import train_heads, training_data
from .config import DEFAULT_K, DEFAULT_TOP, DEFAULT_UNKNOWN_QUANTILE, METHODS, Limits
from .embed import DEFAULT_MODEL, Embedded, Embedder, Progress, load_embedder, parse_model
from .errors import InvalidInputError, ModelMismatchError, VecclfError
from .evaluate import REPORT_FILE, evaluate_arrays, held_out, write_report
from .ingest import AddReport, Ingest
from .inputs import (
    Failure,
    Item,
    MediaLike,
    TextItem,
    concept_folders,
    decode_media,
    decode_paths,
    decode_texts,
    read_text_table,
    sha256_hex,
    shown,
)
from .queries import Query, answers, as_queries, per_space, strict
from .store import Store

__all__ = ["AddReport", "ConceptClassifier", "Hit", "Prediction", "import_path"]


def _labelled_items(
    test: Path, limits: Limits, text_column: str | None, label_column: str | None
) -> Iterator[tuple[Item | Failure, str]]:
    """A labelled test set's items with their labels: a folder per concept, or a table's rows."""
    if test.is_dir():
        for concept, found in concept_folders(test):
            for it in decode_paths([f for f in found if isinstance(f, Path)], limits=limits):
                yield it, concept
        return
    for n, text, label in read_text_table(test, text_column=text_column, label_column=label_column, limits=limits):
        if label is None:
            raise InvalidInputError(f"{test}:{n}: no label (a test set needs a label column)")
        (item,) = decode_texts([(f"{shown(test.absolute())}:{n}", text)], limits=limits)
        yield item, label


def _text_source(text: Any) -> str:
    """A stored text's source, from its content: texts added in separate calls never share one."""
    if not isinstance(text, str):
        return "<text>"
    return f"<text {sha256_hex(text.strip().encode('utf-8', 'surrogatepass'))[:12]}>"


class ConceptClassifier:
    """A store of labelled examples plus the embedder that made them.

    Create with :meth:`create`, reopen with :meth:`open`; use as a context manager so
    the FAISS index is saved and the writer lock released.
    """

    def __init__(
        self,
        store: Store,
        embedder: Embedder | None = None,
        *,
        limits: Limits | None = None,
        k: int = DEFAULT_K,
        unknown_quantile: float = DEFAULT_UNKNOWN_QUANTILE,
    ) -> None:
        self.store = store
        self.limits = limits or Limits.from_env()
        self._embedder = embedder
        if embedder is not None:
            self._check_embedder(embedder)
        self.predictor = Predictor(store, lambda: self.embedder, k=k, unknown_quantile=unknown_quantile)

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def create(
        cls,
        path: str | Path,
        model: str = DEFAULT_MODEL,
        *,
        checkpoint: str | Path | None = None,
        index: str = "auto",
        **kwargs: Any,
    ) -> ConceptClassifier:
        """Create a store at ``path`` for the embedder named by ``model`` (see :func:`vecclf.embed.parse_model`).

        ``index``: the FAISS index kind (``auto``, ``flat``, ``fp16``, ``sq8``, ``ivf``; see :mod:`vecclf.store.index`).
        """
        embedder = load_embedder(parse_model(model, checkpoint))
        store = Store.create(
            path, spec=embedder.spec, identity=embedder.identity, spaces=embedder.spaces(), index=index
        )
        return cls(store, embedder, **kwargs)

    @classmethod
    def open(
        cls, path: str | Path, *, read_only: bool = False, embedder: Embedder | None = None, **kwargs: Any
    ) -> ConceptClassifier:
        """Open an existing store; its embedder is loaded on first need from the recorded spec."""
        return cls(Store.open(path, read_only=read_only), embedder, **kwargs)

    def warm(self, *, background: bool = True) -> threading.Thread | None:
        """Load indexes, label views and thresholds now (in a thread, with ``background``), off the path of
        the first request; returns the thread. A failure here is left for the request that meets it."""

        def run() -> None:
            try:
                self.store.warm()
                self.predictor.warm()
            except VecclfError:
                pass  # the same error reaches the first call that needs what failed, with its context

        if not background:
            run()
            return None
        thread = threading.Thread(target=run, name="vecclf-warm", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        """Save the index and release the store."""
        self.store.close()

    def __enter__(self) -> ConceptClassifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_embedder(self, embedder: Embedder) -> None:
        if embedder.identity != self.store.identity:
            raise ModelMismatchError(
                f"store {self.store.path} was built with {self.store.identity}, not {embedder.identity}"
            )

    @property
    def embedder(self) -> Embedder:
        """The store's embedder (loaded lazily from the store's recorded spec)."""
        if self._embedder is None:
            embedder = load_embedder(self.store.spec)
            self._check_embedder(embedder)
            self._embedder = embedder
        return self._embedder

    @property
    def k(self) -> int:
        """Neighbours that vote (default for every prediction)."""
        return self.predictor.k

    @k.setter
    def k(self, value: int) -> None:
        self.predictor.k = value

    @property
    def unknown_quantile(self) -> float:
        """The quantile of each concept's leave-one-out similarities below which answers are "unknown"."""
        return self.predictor.unknown_quantile

    @unknown_quantile.setter
    def unknown_quantile(self, value: float) -> None:
        self.predictor.unknown_quantile = value

    def _ingest(self) -> Ingest:
        return Ingest(self.store, self.embedder, self.limits)

    # ------------------------------------------------------------------ adding
    def add(
        self,
        media: Sequence[MediaLike],
        concepts: Sequence[str] = (),
        negatives: Sequence[str] = (),
        *,
        progress: Progress | None = None,
        keep_duplicates: bool = False,
    ) -> AddReport:
        """Add images/videos/texts (paths, folders, ``.txt`` files, bytes or PIL images) labelled with ``concepts``.

        Unreadable items are reported in ``failures``; inputs already stored (the same content, or the same
        vector) in ``duplicates``, where they only add their labels to the stored input (unless
        ``keep_duplicates``); the rest are stored.
        """
        ingest = self._ingest()
        decoded = decode_media(media, limits=self.limits, draft=ingest.draft)
        return ingest.add(decoded, concepts, negatives, progress, keep_duplicates=keep_duplicates)

    def add_items(
        self,
        items: Sequence[Item | Failure],
        concepts: Sequence[str] = (),
        negatives: Sequence[str] = (),
        *,
        progress: Progress | None = None,
        keep_duplicates: bool = False,
    ) -> AddReport:
        """Add already-decoded items (see :mod:`vecclf.inputs`; failures among them are reported as such;
        duplicates as in :meth:`add`)."""
        return self._ingest().add(items, concepts, negatives, progress, keep_duplicates=keep_duplicates)

    def add_texts(
        self,
        texts: Sequence[str],
        concepts: Sequence[str] = (),
        negatives: Sequence[str] = (),
        *,
        progress: Progress | None = None,
        keep_duplicates: bool = False,
    ) -> AddReport:
        """Add texts labelled with ``concepts``; empty texts are reported as failures (duplicates as in :meth:`add`)."""
        items = decode_texts(((_text_source(t), t) for t in texts), limits=self.limits)
        return self._ingest().add(items, concepts, negatives, progress, keep_duplicates=keep_duplicates)

    def import_path(
        self,
        path: str | Path,
        *,
        text_column: str | None = None,
        label_column: str | None = None,
        limit_per_concept: int | None = None,
        progress: Progress | None = None,
        keep_duplicates: bool = False,
    ) -> AddReport:
        """Import a folder (one subfolder per concept) or a CSV/JSONL text table (duplicates as in :meth:`add`)."""
        return self._ingest().import_path(
            path,
            text_column=text_column,
            label_column=label_column,
            limit_per_concept=limit_per_concept,
            progress=progress,
            keep_duplicates=keep_duplicates,
        )

    # ------------------------------------------------------------------ querying
    def _decoded(
        self, media: Sequence[MediaLike], texts: Sequence[str], items: Iterable[Item | Failure] | None = None
    ) -> Iterator[Item | Failure]:
        draft = getattr(self.embedder, "input_size", None)
        yield from decode_media(media, limits=self.limits, draft=draft)
        yield from decode_texts(((f"<text {n}>", t) for n, t in enumerate(texts)), limits=self.limits)
        yield from items or ()

    def embed(
        self, media: Sequence[MediaLike] = (), texts: Sequence[str] = (), *, split: bool = False
    ) -> list[Embedded]:
        """Embed inputs with the store's model, without storing them (a video is pooled over its frames)."""
        return strict(answers(self.embedder, self._decoded(media, texts), split, lambda embedded: list(embedded)))

    def predict(
        self,
        media: Sequence[MediaLike] = (),
        *,
        texts: Sequence[str] = (),
        method: str = "auto",
        k: int | None = None,
        top: int = DEFAULT_TOP,
        split: bool = False,
        unknown_quantile: float | None = None,
        failures: list[Failure] | None = None,
    ) -> list[Prediction]:
        """Classify images/videos and texts, one answer per input (``split``: per face or video frame).

        ``method``: ``knn`` (vote of stored neighbours), ``head`` (trained logistic head),
        ``zeroshot`` (concept names through the text tower, blended with any examples), or
        ``auto``: a fresh head if one exists, else k-NN, else zero-shot when the store has
        concepts but no examples at all. An answer is ``unknown`` below its concept's open-set threshold
        (``unknown_quantile``: for this call; see :mod:`vecclf.classify.openset`). An input that cannot be read
        or embedded is put in ``failures`` when a list is given (the others are answered), else raises its error.
        """
        stream = self.predict_stream(
            self._decoded(media, texts), method=method, k=k, top=top, split=split, unknown_quantile=unknown_quantile
        )
        return strict(stream, failures)

    def predict_stream(
        self,
        inputs: Iterable[Item | Failure],
        *,
        method: str = "auto",
        k: int | None = None,
        top: int = DEFAULT_TOP,
        split: bool = False,
        unknown_quantile: float | None = None,
    ) -> Iterator[Prediction | Failure]:
        """:meth:`predict` over decoded inputs as they come (any number: they are embedded and answered in
        chunks); an input that cannot be embedded yields its :class:`~vecclf.inputs.Failure` in its place."""
        if method not in METHODS:
            raise InvalidInputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        return answers(
            self.embedder,
            inputs,
            split,
            lambda embedded: self.predict_embedded(
                embedded, method=method, k=k, top=top, unknown_quantile=unknown_quantile
            ),
        )

    def predict_embedded(
        self,
        embedded: Sequence[Embedded],
        *,
        method: str = "auto",
        k: int | None = None,
        top: int = DEFAULT_TOP,
        unknown_quantile: float | None = None,
    ) -> list[Prediction]:
        """Predictions for embedded queries: one batched prediction per space, answers in query order."""
        preds = self._predict(as_queries(embedded), method, k, top, unknown_quantile)
        return [
            dataclasses.replace(p, text=e.item.text) if isinstance(e.item, TextItem) else p
            for p, e in zip(preds, embedded)
        ]

    def _predict(
        self, queries: Sequence[Query], method: str, k: int | None, top: int, quantile: float | None = None
    ) -> list[Prediction]:
        with self.store.reading():
            return per_space(
                queries,
                lambda space, vectors, sources: self.predictor.predict(
                    space, vectors, method=method, k=k, top=top, sources=sources, unknown_quantile=quantile
                ),
            )

    def predict_vectors(
        self,
        space: str,
        vectors: np.ndarray,
        *,
        method: str = "auto",
        k: int | None = None,
        top: int = DEFAULT_TOP,
        sources: Sequence[str] | None = None,
        unknown_quantile: float | None = None,
    ) -> list[Prediction]:
        """Predictions for already-embedded queries in ``space`` (see :meth:`predict`)."""
        return self.predictor.predict(
            space, vectors, method=method, k=k, top=top, sources=sources, unknown_quantile=unknown_quantile
        )

    def predict_stored(
        self,
        ids: Sequence[int],
        *,
        method: str = "auto",
        k: int | None = None,
        top: int = DEFAULT_TOP,
        unknown_quantile: float | None = None,
    ) -> list[Prediction]:
        """Predict for already-stored inputs from their stored vectors (no embedding).

        The input itself is among its own neighbours when it is labelled.
        """
        with self.store.reading():  # the inputs cannot vanish between reading their vectors and voting
            queries = [(f"id:{i}", *self.store.vector(i)) for i in ids]
            return self._predict(queries, method, k, top, unknown_quantile)

    def verify(
        self,
        media: Sequence[MediaLike] = (),
        *,
        texts: Sequence[str] = (),
        concept: str,
        split: bool = False,
        unknown_quantile: float | None = None,
        failures: list[Failure] | None = None,
        items: Iterable[Item | Failure] | None = None,
    ) -> list[dict[str, Any]]:
        """1:1 verification: is each input the ``concept``? (``failures``: as in :meth:`predict`; ``items``:
        decoded inputs, after ``media``/``texts``)

        The score is the best similarity to one of the concept's examples; the threshold is the concept's
        open-set threshold, below which predictions answer ``unknown`` (see :mod:`vecclf.classify.openset`), so
        an input verified as a concept is never ``unknown`` with that concept nearest. With too few examples to
        learn from, the answer is not verified.
        """
        stream = answers(
            self.embedder,
            self._decoded(media, texts, items),
            split,
            lambda e: self.verify_embedded(e, concept=concept, unknown_quantile=unknown_quantile),
        )
        return strict(stream, failures)

    def verify_embedded(
        self, embedded: Sequence[Embedded], *, concept: str, unknown_quantile: float | None = None
    ) -> list[dict[str, Any]]:
        """:meth:`verify` for embedded queries."""
        return per_space(
            as_queries(embedded),
            lambda space, vectors, sources: self.predictor.verify(
                space, vectors, concept, sources, unknown_quantile=unknown_quantile
            ),
        )

    def calibration(self, space: str) -> Calibration:
        """The space's 1:1 verification threshold (see :meth:`Predictor.calibration`)."""
        return self.predictor.calibration(space)

    def thresholds(self, space: str) -> dict[str, float]:
        """Open-set thresholds of each concept in ``space`` (see :meth:`Predictor.thresholds`)."""
        return self.predictor.thresholds(space)

    def search(
        self,
        media: Sequence[MediaLike] = (),
        *,
        texts: Sequence[str] = (),
        k: int = DEFAULT_K,
        concept: str | None = None,
        split: bool = False,
        failures: list[Failure] | None = None,
        queries: list[str] | None = None,
        collapse: bool = True,
        items: Iterable[Item | Failure] | None = None,
    ) -> list[list[Hit]]:
        """Most similar stored inputs per query; ``concept`` restricts candidates before ranking
        (``failures``: as in :meth:`predict`; ``queries``, when given, gets each answered query's source;
        ``collapse``: one hit per video, its best frame; ``items``: decoded queries, after ``media``/``texts``).
        """
        if k <= 0:
            raise InvalidInputError(f"k must be positive, got {k}")

        def answer(embedded: list[Embedded]) -> list[list[Hit]]:
            if queries is not None:
                queries.extend(e.item.source for e in embedded)
            return self.search_embedded(embedded, k=k, concept=concept, collapse=collapse)

        stream = answers(self.embedder, self._decoded(media, texts, items), split, answer)
        return strict(stream, failures)

    def search_embedded(
        self, embedded: Sequence[Embedded], *, k: int = DEFAULT_K, concept: str | None = None, collapse: bool = True
    ) -> list[list[Hit]]:
        """:meth:`search` for embedded queries."""
        return per_space(
            as_queries(embedded),
            lambda space, vectors, _: self.search_vectors(space, vectors, k=k, concept=concept, collapse=collapse),
        )

    def search_vectors(
        self,
        space: str,
        vectors: np.ndarray,
        *,
        k: int = DEFAULT_K,
        concept: str | None = None,
        collapse: bool = True,
    ) -> list[list[Hit]]:
        """Search with already-embedded queries (one consistent view of the store)."""
        return self.predictor.search(space, vectors, k=k, concept=concept, collapse=collapse)

    # ------------------------------------------------------------------ heads and evaluation
    def head(self, space: str) -> tuple[HeadWeights, bool] | None:
        """The stored head for ``space`` and whether it is fresh (trained at the current generation)."""
        return self.predictor.head(space)

    def training_data(self, space: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """``(X, Y, classes)`` for ``space`` (see :func:`vecclf.classify.training.training_data`)."""
        return training_data(self.store, space)

    def train(
        self, *, mode: str = "auto", space: str | None = None, C: float = 10.0, device: str | None = None
    ) -> dict[str, Any]:
        """Train and persist a logistic head per space that has labelled examples; returns a summary."""
        trained = train_heads(self.store, mode=mode, space=space, C=C, device=device)
        for sp, (gen, head, _) in trained.items():
            self.predictor.remember_head(sp, gen, head)
        return {sp: summary for sp, (_, _, summary) in trained.items()}

    def evaluate(
        self,
        *,
        method: str = "knn",
        space: str | None = None,
        folds: int = 5,
        k: int | None = None,
        out_dir: str | Path | None = None,
        test: str | Path | None = None,
        text_column: str | None = None,
        label_column: str | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Leave-one-out (k-NN) or k-fold (head) evaluation of the stored examples; with ``test`` (a folder per
        concept, or a CSV/JSONL table with text and label columns) the stored classifier's answers on that
        labelled set instead (``method``: any prediction method), out-of-scope items (labels that are no stored
        concept) included.

        Writes ``evaluation.json`` and PNG plots to ``out_dir`` (default: ``<store>/evaluation``)
        and returns the report with the written ``files``.
        """
        if test is not None:
            report = self._evaluate_on(Path(test), method, k, text_column, label_column, progress)
            report["files"] = write_report(report, Path(out_dir) if out_dir else self._evaluation_dir)
            return {key: v for key, v in report.items() if not key.startswith("_")}
        spaces = [space] if space else [s for s in self.store.spaces if self.store.label_view(s).classes]
        if not spaces:
            raise InvalidInputError("nothing to evaluate: add labelled examples first")
        chosen = max(spaces, key=lambda s: len(self.store.label_view(s).label_roots))
        X, Y, classes = self.training_data(chosen)
        report = evaluate_arrays(
            X,
            Y,
            classes,
            method=method,
            k=self.k if k is None else k,
            folds=folds,
            unknown_quantile=self.unknown_quantile,
        )
        report["space"] = chosen
        report["files"] = write_report(report, Path(out_dir) if out_dir else self._evaluation_dir)
        return {key: v for key, v in report.items() if not key.startswith("_")}

    def _evaluate_on(
        self,
        test: Path,
        method: str,
        k: int | None,
        text_column: str | None,
        label_column: str | None,
        progress: Progress | None,
    ) -> dict[str, Any]:
        labelled = _labelled_items(test, self.limits, text_column, label_column)
        classes = sorted(c.name for c in self.store.concepts())
        truth: dict[str, str] = {}

        def items() -> Iterator[Item | Failure]:
            for it, label in labelled:
                truth[it.source] = label
                yield it

        answers, failed = [], []
        for result in self.predict_stream(items(), method=method, k=k, top=max(1, len(classes))):
            if isinstance(result, Failure):
                failed.append(result)
            else:  # a face store's answer names its face: "photo.jpg#face=..."
                label = truth.get(result.source, truth.get(result.source.rsplit("#", 1)[0], ""))
                answers.append((label, (result.concept, result.scores)))
            if progress is not None:
                progress(1)
        if not answers:
            raise InvalidInputError(f"{test}: nothing in the test set could be answered")
        report = held_out([t for t, _ in answers], [a for _, a in answers], classes, method=method)
        report["skipped"] = len(failed)
        report["failures"] = [{"source": f.source, "reason": f.reason} for f in failed[:100]]
        report["test"] = str(test)
        return report

    @property
    def _evaluation_dir(self) -> Path:
        return self.store.path / "evaluation"

    def latest_evaluation(self) -> dict[str, Any] | None:
        """The report last written by :meth:`evaluate` into the store folder, or None."""
        path = self._evaluation_dir / REPORT_FILE
        try:
            report: dict[str, Any] = json.loads(path.read_text())
            report["evaluated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(path.stat().st_mtime))
        except (OSError, ValueError):
            return None
        return report

    # ------------------------------------------------------------------ management
    def concepts(self) -> list[dict[str, Any]]:
        """Concepts with example counts and open-set thresholds: per space where the concept has examples, and
        ``threshold_set`` when a user set one (see :meth:`set_threshold`)."""
        with self.store.reading():
            chosen = self.store.concept_thresholds()
            learned = {s: self.predictor.thresholds(s) for s in self.store.spaces if self.store.label_view(s).classes}
            out = []
            for c in self.store.concepts():
                entry = c.to_dict()
                entry["thresholds"] = {
                    s: round(t[c.name], 6) if np.isfinite(t[c.name]) else None
                    for s, t in learned.items()
                    if c.name in t
                }
                entry["threshold_set"] = chosen.get(c.name)
                out.append(entry)
            return out

    def set_threshold(self, name: str, value: float | None) -> None:
        """Set a concept's open-set threshold (a similarity; predictions below it are ``unknown`` and verification
        fails), or with None go back to the one learned from the examples."""
        self.store.set_threshold(name, value)

    def add_concepts(self, names: Sequence[str]) -> None:
        """Create concepts with no examples yet (usable at once by zero-shot)."""
        self.store.create_concepts(names)

    def rename_concept(self, old: str, new: str) -> None:
        """Rename a concept."""
        self.store.rename_concept(old, new)

    def delete_concept(self, name: str, *, with_inputs: bool = False) -> dict[str, int]:
        """Delete a concept and its labels; its inputs stay unless ``with_inputs`` (see :meth:`Store.delete_concept`)."""
        return self.store.delete_concept(name, with_inputs=with_inputs)

    def inputs(
        self, *, concept: str | None = None, kind: str | None = None, limit: int = 50, offset: int = 0, after: int = 0
    ) -> tuple[list[dict[str, Any]], int]:
        """Stored inputs, a page at a time (see :meth:`Store.list_inputs`), and how many match in all."""
        records, total = self.store.list_inputs(concept=concept, kind=kind, limit=limit, offset=offset, after=after)
        return [r.to_dict() for r in records], total

    def input(self, input_id: int) -> dict[str, Any]:
        """One stored input (its kind, source, text and labels) by id."""
        return self.store.get([input_id])[0].to_dict()

    def delete(self, ids: Sequence[int]) -> list[int]:
        """Delete inputs by id (videos with their frames)."""
        return self.store.delete(ids)

    def info(self) -> dict[str, Any]:
        """Store summary."""
        return self.store.info()


def import_path(
    store: str | Path,
    source: str | Path,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    limit_per_concept: int | None = None,
    progress: Progress | None = None,
) -> AddReport:
    """Import a folder (one subfolder per concept) or a CSV/JSONL table into the store at ``store``, as
    ``vecclf import`` does: the store is opened for writing, filled and closed (its index saved)."""
    with ConceptClassifier.open(store) as clf:
        return clf.import_path(
            source,
            text_column=text_column,
            label_column=label_column,
            limit_per_concept=limit_per_concept,
            progress=progress,
        )
