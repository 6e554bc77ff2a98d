"""The object users touch: embedder + store + classifiers.

Data flows one way: inputs are decoded (:mod:`vecclf.inputs`), embedded
(:mod:`vecclf.embed`), written to the store (:mod:`vecclf.store`) and classified by
voting over stored neighbours (:mod:`vecclf.knn`).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _index, knn, zeroshot
from .config import Limits
from .embed import Embedder, load_embedder, parse_model
from .errors import InvalidInputError, ModalityError, ModelMismatchError, NotFittedError, VecclfError
from .evaluate import REPORT_FILE, evaluate_arrays, write_report
from .faces import FACE_MODES, FaceEmbedder, face_items
from .head import LogisticHead
from .inputs import (
    TEXT_SUFFIXES,
    Failure,
    ImageItem,
    Item,
    MediaLike,
    TextItem,
    VideoItem,
    concept_folders,
    decode_ahead,
    expand_paths,
    load_media,
    make_text,
    read_text_lines,
    read_text_table,
    thumbnail_jpeg,
)
from .store import LabelView, NewInput, Store, check_concept_name, locate

METHODS = ("auto", "knn", "head", "zeroshot")
Progress = Callable[[int], None]


@dataclass
class AddReport:
    """What an add/import did: new inputs, failures by source, and embedding-cache use."""

    added: list[dict[str, Any]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    embedded: int = 0
    cached: int = 0

    @property
    def ids(self) -> list[int]:
        """Ids of the new top-level inputs (videos, images, texts; not frames)."""
        return [a["id"] for a in self.added]

    def merge(self, other: AddReport) -> None:
        """Fold another report into this one."""
        self.added += other.added
        self.failures += other.failures
        self.embedded += other.embedded
        self.cached += other.cached

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "added": self.added,
            "failures": [{"source": f.source, "reason": f.reason} for f in self.failures],
            "embedded": self.embedded,
            "cached": self.cached,
        }


@dataclass(frozen=True)
class Prediction:
    """A prediction with its evidence.

    ``concept`` is ``"unknown"`` when the best concept falls below its open-set
    threshold; ``nearest`` is the best concept regardless.
    """

    source: str
    concept: str
    score: float
    nearest: str | None
    threshold: float | None
    method: str
    scores: dict[str, float]
    neighbours: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class Hit:
    """A search result."""

    id: int
    similarity: float
    kind: str
    source: str | None
    text: str | None
    parent_id: int | None
    timestamp_s: float | None
    concepts: list[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


def pool_frames(frames: np.ndarray) -> np.ndarray:
    """A video's vector: the L2-normalised mean of its frame vectors."""
    pooled = frames.mean(axis=0)
    return (pooled / max(float(np.linalg.norm(pooled)), 1e-12)).astype(np.float32)


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
        k: int = 10,
        unknown_quantile: float = 0.01,
    ) -> None:
        self.store = store
        self.limits = limits or Limits.from_env()
        self.k = k
        self.unknown_quantile = unknown_quantile
        self._embedder = embedder
        # per space: (generation, quantile, leave-one-out similarities, thresholds)
        self._thresholds: dict[str, tuple[int, float, dict[str, np.ndarray], dict[str, float]]] = {}
        self._calibrations: dict[str, tuple[int, knn.Calibration]] = {}
        self._heads: dict[str, tuple[int, LogisticHead]] = {}
        if embedder is not None:
            self._check_embedder(embedder)

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def create(
        cls,
        path: str | Path,
        model: str = "ViT-B-32:laion2b_s34b_b79k",
        *,
        checkpoint: str | Path | None = None,
        index: str = "auto",
        **kwargs: Any,
    ) -> ConceptClassifier:
        """Create a store at ``path`` for the embedder named by ``model`` (see :func:`parse_model`).

        ``index``: the FAISS index kind (``auto``, ``flat``, ``fp16``, ``sq8``, ``ivf``; see :mod:`vecclf._index`).
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
    def _draft(self) -> int | None:
        """The image side the embedder resizes to, so large JPEGs can decode at a reduced scale."""
        size = getattr(self.embedder, "input_size", None)
        return int(size) if size else None

    def _face_embedder(self) -> FaceEmbedder | None:
        """The embedder when it works on faces (inputs are then reduced to face crops), else None."""
        if self.store.spec.get("kind") != "faces":
            return None
        emb = self.embedder
        return emb if isinstance(emb, FaceEmbedder) else None

    @property
    def embedder(self) -> Embedder:
        """The store's embedder (loaded lazily from the store's recorded spec)."""
        if self._embedder is None:
            embedder = load_embedder(self.store.spec)
            self._check_embedder(embedder)
            self._embedder = embedder
        return self._embedder

    # ------------------------------------------------------------------ adding
    def _embed_items(self, items: Sequence[Item], report: AddReport, progress: Progress | None) -> list[np.ndarray]:
        """One vector per item (pooled for videos) plus frame vectors, using the cache first."""
        emb = self.embedder
        jobs: list[tuple[str, str, Any]] = []  # (space, hash, payload) for every vector needed
        for it in items:
            if isinstance(it, TextItem):
                jobs.append((emb.space_of("text"), it.content_hash, it.text))
            elif isinstance(it, ImageItem):
                jobs.append((emb.space_of("image"), it.content_hash, it.image))
            else:
                jobs += [(emb.space_of("frame"), h, f) for h, f in zip(it.frame_hashes, it.frames)]
        vectors: dict[tuple[str, str], np.ndarray] = {}
        for space in sorted({s for s, _, _ in jobs}):
            hashes = [h for s, h, _ in jobs if s == space]
            for h, v in self.store.cached_vectors(space, hashes).items():
                vectors[(space, h)] = v
        todo = {(s, h): p for s, h, p in jobs if (s, h) not in vectors}
        report.cached += len(jobs) - len(todo)
        report.embedded += len(todo)
        texts = [(key, p) for key, p in todo.items() if isinstance(p, str)]
        images = [(key, p) for key, p in todo.items() if not isinstance(p, str)]
        if texts:
            out = emb.embed_texts([p for _, p in texts], progress=progress)
            vectors.update({key: v for (key, _), v in zip(texts, out)})
        if images:
            out = emb.embed_images([p for _, p in images], progress=progress)
            vectors.update({key: v for (key, _), v in zip(images, out)})
        return [vectors[(s, h)] for s, h, _ in jobs]

    def _rows(
        self, items: Sequence[Item], vecs: list[np.ndarray], concepts: tuple[str, ...], negatives: tuple[str, ...]
    ) -> list[NewInput]:
        emb = self.embedder
        rows: list[NewInput] = []
        it_vecs = iter(vecs)
        for it in items:
            if isinstance(it, VideoItem):
                frames = [next(it_vecs) for _ in it.frames]
                pooled = pool_frames(np.stack(frames))
                parent = len(rows)
                space = emb.space_of("video")
                rows.append(
                    NewInput(
                        "video",
                        space,
                        it.content_hash,
                        pooled,
                        source=it.source,
                        concepts=concepts,
                        negatives=negatives,
                        metadata={"frames": len(frames)},
                        thumbnail=thumbnail_jpeg(it.frames[0]),
                    )
                )
                rows += [
                    NewInput("frame", space, h, v, source=it.source, parent=parent, frame_index=n, timestamp_s=t)
                    for n, (h, v, t) in enumerate(zip(it.frame_hashes, frames, it.timestamps))
                ]
            elif isinstance(it, TextItem):
                rows.append(
                    NewInput(
                        "text",
                        emb.space_of("text"),
                        it.content_hash,
                        next(it_vecs),
                        source=it.source,
                        text=it.text,
                        concepts=concepts,
                        negatives=negatives,
                    )
                )
            else:
                rows.append(
                    NewInput(
                        "image",
                        emb.space_of("image"),
                        it.content_hash,
                        next(it_vecs),
                        source=it.source,
                        concepts=concepts,
                        negatives=negatives,
                        thumbnail=thumbnail_jpeg(it.image),
                    )
                )
        return rows

    def _add_items(
        self,
        items: Iterable[Item | Failure],
        concepts: Sequence[str],
        negatives: Sequence[str],
        progress: Progress | None,
        batch_size: int = 64,
    ) -> AddReport:
        pos = tuple(check_concept_name(c) for c in concepts)
        neg = tuple(check_concept_name(c) for c in negatives)
        if set(pos) & set(neg):
            raise InvalidInputError(f"concept(s) {sorted(set(pos) & set(neg))} given as both positive and negative")
        report = AddReport()
        batch: list[Item] = []

        def commit() -> None:
            if not batch:
                return
            vecs = self._embed_items(batch, report, progress)
            rows = self._rows(batch, vecs, pos, neg)
            ids = self.store.add(rows)
            for row, new_id in zip(rows, ids):
                if row.kind != "frame":
                    report.added.append({"id": new_id, "kind": row.kind, "source": row.source})
            batch.clear()

        faces = self._face_embedder()
        for it in decode_ahead(items):
            if isinstance(it, Failure):
                report.failures.append(it)
                continue
            if faces is not None:
                try:  # an enrolment photo contributes its largest face
                    it = face_items(faces, it)[0]
                except VecclfError as exc:
                    report.failures.append(Failure(it.source, str(exc)))
                    continue
            batch.append(it)
            if len(batch) >= batch_size:
                commit()
        commit()
        return report

    def _decode_paths(self, paths: Iterable[str | Path]) -> Iterator[Item | Failure]:
        for p in expand_paths(paths):
            if isinstance(p, Failure):
                yield p
                continue
            try:
                if p.suffix.lower() in TEXT_SUFFIXES:
                    for n, line in enumerate(read_text_lines(p), start=1):
                        yield make_text(line, source=f"{p}:{n}", limits=self.limits)
                else:
                    yield load_media(p, limits=self.limits, draft=self._draft)
            except (VecclfError, OSError, UnicodeDecodeError) as exc:
                yield Failure(str(p), str(exc))

    def add(
        self,
        media: Sequence[MediaLike],
        concepts: Sequence[str] = (),
        negatives: Sequence[str] = (),
        *,
        progress: Progress | None = None,
    ) -> AddReport:
        """Add images/videos (paths, folders, bytes or PIL images) labelled with ``concepts``.

        Unreadable items are reported in ``failures``; the rest are stored.
        """
        paths = [m for m in media if isinstance(m, (str, Path))]
        others = [m for m in media if not isinstance(m, (str, Path))]

        def items() -> Iterator[Item | Failure]:
            yield from self._decode_paths(paths)
            for n, obj in enumerate(others):
                try:
                    yield load_media(obj, limits=self.limits, source=f"<input {n}>", draft=self._draft)
                except VecclfError as exc:
                    yield Failure(f"<input {n}>", str(exc))

        return self._add_items(items(), concepts, negatives, progress)

    def add_items(
        self,
        items: Sequence[Item],
        concepts: Sequence[str] = (),
        negatives: Sequence[str] = (),
        *,
        progress: Progress | None = None,
    ) -> AddReport:
        """Add already-decoded items (see :mod:`vecclf.inputs`)."""
        return self._add_items(items, concepts, negatives, progress)

    def add_texts(
        self,
        texts: Sequence[str],
        concepts: Sequence[str] = (),
        negatives: Sequence[str] = (),
        *,
        progress: Progress | None = None,
    ) -> AddReport:
        """Add texts labelled with ``concepts``; empty texts are reported as failures."""
        items = self._text_items((f"<text {n}>", t) for n, t in enumerate(texts))
        return self._add_items(items, concepts, negatives, progress)

    def _text_items(self, texts: Iterable[tuple[str, str]]) -> Iterator[Item | Failure]:
        """``(source, text)`` pairs as text items, or failures naming the source."""
        for source, text in texts:
            try:
                yield make_text(text, source=source, limits=self.limits)
            except VecclfError as exc:
                yield Failure(source, str(exc))

    def import_path(
        self,
        path: str | Path,
        *,
        text_column: str | None = None,
        label_column: str | None = None,
        limit_per_concept: int | None = None,
        progress: Progress | None = None,
    ) -> AddReport:
        """Import a folder (one subfolder per concept) or a CSV/JSONL text table."""
        p = Path(path)
        report = AddReport()
        if limit_per_concept is not None and limit_per_concept <= 0:
            raise InvalidInputError("limit per concept must be positive")
        if p.is_dir():
            for concept, found in concept_folders(p):
                files = [f for f in found if isinstance(f, Path)]
                picked = files[:limit_per_concept] if limit_per_concept else files
                skipped = [f for f in found if isinstance(f, Failure)]
                lazy = itertools.chain(skipped, self._decode_paths(picked))  # folders can be large
                report.merge(self._add_items(lazy, [concept], (), progress))
            return report
        rows = read_text_table(p, text_column=text_column, label_column=label_column)
        groups: dict[str | None, list[tuple[int, str]]] = {}
        for n, (text, label) in enumerate(rows, start=1):
            groups.setdefault(label, []).append((n, text))
        for label in sorted(groups, key=lambda x: (x is None, x or "")):
            chosen = groups[label][:limit_per_concept] if limit_per_concept else groups[label]
            items = self._text_items((f"{p}:{n}", text) for n, text in chosen)
            report.merge(self._add_items(items, [label] if label else [], (), progress))
        return report

    # ------------------------------------------------------------------ querying
    def _query_items(self, media: Sequence[MediaLike], texts: Sequence[str]) -> list[Item]:
        items: list[Item] = []
        for n, m in enumerate(media):
            src = str(m) if isinstance(m, (str, Path)) else f"<input {n}>"
            items.append(load_media(m, limits=self.limits, source=src, draft=self._draft))
        items += [make_text(t, source=f"<text {n}>", limits=self.limits) for n, t in enumerate(texts)]
        if not items:
            raise InvalidInputError("nothing to query: give at least one image, video or text")
        return items

    def embed(
        self, media: Sequence[MediaLike] = (), texts: Sequence[str] = (), *, faces: str = "largest"
    ) -> list[tuple[str, str, np.ndarray]]:
        """``(source, space, vector)`` per query (a video is pooled over its sampled frames)."""
        return self.embed_items(self._query_items(media, texts), faces=faces)

    def prepare_queries(self, items: Sequence[Item], faces: str = "largest") -> list[Item]:
        """Query items as the embedder needs them.

        With the faces embedder each image becomes its largest face or, with ``faces="all"``,
        one query per face (sources end in ``#face=left,top,right,bottom``); an image without a
        face raises :class:`~vecclf.faces.NoFaceError`. Other embedders take items as they are.
        """
        if faces not in FACE_MODES:
            raise InvalidInputError(f"faces must be one of {', '.join(FACE_MODES)}, got {faces!r}")
        face_emb = self._face_embedder()
        if face_emb is not None:
            return [f for it in items for f in face_items(face_emb, it, faces)]
        if faces != "largest":
            raise InvalidInputError("faces='all' needs a store made with the faces embedder (--model faces)")
        return list(items)

    def embed_items(self, items: Sequence[Item], *, faces: str = "largest") -> list[tuple[str, str, np.ndarray]]:
        """Embed decoded items (see :meth:`prepare_queries`): ``(source, space, vector)`` each."""
        emb = self.embedder
        out: list[tuple[str, str, np.ndarray]] = []
        for it in self.prepare_queries(items, faces):
            if isinstance(it, TextItem):
                out.append((it.source, emb.space_of("text"), emb.embed_texts([it.text])[0]))
            elif isinstance(it, ImageItem):
                out.append((it.source, emb.space_of("image"), emb.embed_images([it.image])[0]))
            else:
                out.append((it.source, emb.space_of("video"), pool_frames(emb.embed_images(it.frames))))
        return out

    def _check_queryable(self, space: str) -> None:
        if self.store.count(space) == 0:
            other = [s for s in self.store.spaces if s != space and self.store.count(s) > 0]
            if other:
                raise ModalityError(
                    f"this store keeps {space} inputs in their own space and it holds no {space} examples "
                    f"(examples exist only in: {', '.join(other)}); the {self.store.identity.get('kind')} embedder "
                    "cannot compare across modalities — use a joint (CLIP) model for cross-modal queries"
                )

    def thresholds(self, space: str) -> dict[str, float]:
        """Open-set thresholds of each concept in ``space``.

        After a write only the concepts it touched are recomputed (the label view says which),
        so a new concept in a large store reads just its own examples.
        """
        view = self.store.label_view(space)
        cached = self._thresholds.get(space)
        if cached is not None and cached[:2] == (view.generation, self.unknown_quantile):
            return cached[3]
        changed = view.changed_since(cached[0]) if cached is not None else None
        old_loo = cached[2] if cached is not None and changed is not None else {}
        old_result = cached[3] if cached is not None and cached[1] == self.unknown_quantile else {}
        unchanged = {c for c in view.classes if c in old_loo and c not in (changed or ())}
        loo = {c: old_loo[c] for c in unchanged}
        stale = [j for j, c in enumerate(view.classes) if c not in unchanged]
        if stale:
            wanted = []
            for j in stale:  # read at most the sample each threshold is computed from, not whole classes
                members = view.members(j)
                wanted.append(members[_index.sample_rows(len(members), knn.LOO_MAX_EXAMPLES, 0)])
            ids, vecs = self.store.vectors(space, np.unique(np.concatenate(wanted)).tolist())
            for j, members in zip(stale, wanted):
                pos, ok = locate(ids, members)  # a member deleted meanwhile is skipped
                loo[view.classes[j]] = knn.loo_similarities(vecs[pos[ok]])
        known = {c: old_result[c] for c in unchanged if c in old_result}
        result = knn.thresholds_from_loo(loo, quantile=self.unknown_quantile, known=known)
        self._thresholds[space] = (view.generation, self.unknown_quantile, loo, result)
        return result

    # ------------------------------------------------------------------ heads
    def head(self, space: str) -> tuple[LogisticHead, bool] | None:
        """The stored head for ``space`` and whether it is fresh (trained at the current generation)."""
        gen = self.store.head_generation(space)
        if gen is None:
            return None
        cached = self._heads.get(space)
        if cached is None or cached[0] != gen:
            stored = self.store.load_head(space)
            if stored is None:  # deleted meanwhile
                return None
            gen, meta, arrays, _ = stored
            cached = (gen, LogisticHead.from_state(meta, arrays))
            self._heads[space] = cached
        return cached[1], gen == self.store.generation(space)

    def training_data(self, space: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """``(X, Y, classes)`` for ``space``: one row per labelled example (a video by its pooled vector).

        ``Y[i, c]`` is +1 for a positive, -1 for an explicit negative *or* a positive of another
        concept only, 0 when unknown.
        """
        view = self.store.label_view(space)
        ids, X = self.store.vectors(space, view.label_roots.tolist())
        pos = np.searchsorted(view.label_roots, ids)
        order = np.argsort(np.array(view.classes, dtype=object), kind="stable")  # heads list concepts sorted
        M = view.matrix[pos][:, order]
        has_pos = (M > 0).any(axis=1, keepdims=True)
        Y = np.where(M != 0, M, np.where(has_pos, -1, 0)).astype(np.int8)
        return X, Y, [view.classes[j] for j in order]

    def train(
        self, *, mode: str = "auto", space: str | None = None, C: float = 10.0, device: str | None = None
    ) -> dict[str, Any]:
        """Train and persist a logistic head per space that has labelled examples; returns a summary."""
        if mode not in ("auto", "exclusive", "multilabel"):
            raise InvalidInputError(f"mode must be auto, exclusive or multilabel, got {mode!r}")
        spaces = [space] if space else list(self.store.spaces)
        summary: dict[str, Any] = {}
        for sp in spaces:
            gen = self.store.generation(sp)
            X, Y, classes = self.training_data(sp)
            if len(classes) == 0:
                continue
            single = bool(np.all((Y > 0).sum(axis=1) == 1))
            explicit_neg = any(c.negatives for c in self.store.concepts())
            exclusive_ok = single and not explicit_neg and len(classes) > 1
            chosen = mode if mode != "auto" else ("exclusive" if exclusive_ok else "multilabel")
            import torch  # noqa: F401  (imported before timing: the first import takes seconds)

            started = time.perf_counter()
            if chosen == "exclusive":
                if not single:
                    raise InvalidInputError(
                        "exclusive mode needs exactly one positive concept per example; use multilabel"
                    )
                y = np.array(classes, dtype=object)[np.argmax(Y > 0, axis=1)]
                head = LogisticHead("exclusive", C=C, device=device).fit(X, y)
            else:
                head = LogisticHead("multilabel", C=C, device=device).fit(X, Y, classes=classes)
            seconds = time.perf_counter() - started
            meta, arrays = head.to_state()
            self.store.save_head(sp, gen, meta, arrays)
            self._heads[sp] = (gen, head)
            summary[sp] = {
                "mode": chosen,
                "classes": classes,
                "examples": len(X),
                "iterations": head.n_iter_,
                "seconds": round(seconds, 3),
            }
        if not summary:
            raise InvalidInputError("nothing to train on: add labelled examples first")
        return summary

    # ------------------------------------------------------------------ predicting
    def _choose(self, space: str, method: str, head: tuple[LogisticHead, bool] | None) -> str:
        if method != "auto":
            return method
        if head is not None and head[1]:
            return "head"
        if self.store.label_view(space).classes:
            return "knn"
        no_examples = all(not self.store.label_view(sp).classes for sp in self.store.spaces)
        text_here = "text" in self.embedder.modalities and self.embedder.space_of("text") == space
        if no_examples and self.store.concepts() and text_here:
            return "zeroshot"  # only concept names so far
        return "knn"

    def predict_vectors(
        self,
        space: str,
        vectors: np.ndarray,
        *,
        method: str = "auto",
        k: int | None = None,
        top: int = 5,
        weighting: knn.Weighting = "similarity",
        sources: Sequence[str] | None = None,
    ) -> list[Prediction]:
        """Predictions for already-embedded queries in ``space`` (see :meth:`predict`).

        The store is read under one consistent view: a concurrent write lands before or after.
        """
        with self.store.reading():
            return self._predict_vectors(space, vectors, method, k, top, weighting, sources)

    def _predict_vectors(
        self,
        space: str,
        vectors: np.ndarray,
        method: str,
        k: int | None,
        top: int,
        weighting: knn.Weighting,
        sources: Sequence[str] | None,
    ) -> list[Prediction]:
        k = self.k if k is None else k
        if k <= 0 or top <= 0:
            raise InvalidInputError("k and top must be positive")
        if method not in METHODS:
            raise InvalidInputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        found = self.head(space) if method in ("auto", "head") else None
        used = self._choose(space, method, found)
        view = self.store.label_view(space)
        n = len(vectors)
        if not view.classes and used != "zeroshot":
            self._check_queryable(space)
            raise InvalidInputError("no labelled examples to classify with; add examples with a concept first")
        votes = self._vote(space, vectors, view, k, weighting) if view.classes else None
        thresholds: dict[str, float] = {}
        classes: list[str]
        if used == "knn":
            assert votes is not None
            classes, scores, support = view.classes, votes.scores, votes.support
            thresholds = self.thresholds(space)
        elif used == "head":
            if found is None:
                raise NotFittedError("no head trained for this store yet; run `vecclf train` (or use --method knn)")
            head, _ = found
            classes, scores = [str(c) for c in head.classes_], head.predict_proba(vectors)
            support = scores
            if head.mode == "multilabel":
                thresholds = dict.fromkeys(classes, 0.5)
        else:
            classes = [c.name for c in self.store.concepts()]
            if not classes:
                raise InvalidInputError("no concepts yet: add examples or create concepts (vecclf concepts add NAME)")
            scores = zeroshot.zeroshot_proba(vectors, zeroshot.prompt_vectors(self.embedder, classes, space))
            if votes is not None:
                counts = np.zeros(len(classes))
                col = {c: j for j, c in enumerate(classes)}
                knn_full = np.zeros_like(scores)
                for j, name in enumerate(view.classes):
                    counts[col[name]] = len(view.members(j))
                    knn_full[:, col[name]] = votes.scores[:, j]
                scores = zeroshot.blend(scores, knn_full, counts)
            support = scores
        order = knn.rank(scores, support)
        neighbour_ids = sorted({nb[0] for row in votes.neighbours for nb in row}) if votes else []
        records = {r.id: r for r in self.store.get(neighbour_ids)}
        out: list[Prediction] = []
        for i in range(n):
            best = int(order[i, 0])
            name = classes[best]
            score = float(scores[i, best])
            threshold = thresholds.get(name, -np.inf)
            evidence = float(support[i, best])
            accepted = score > 0 and evidence >= threshold
            out.append(
                Prediction(
                    source=sources[i] if sources else f"<query {i}>",
                    concept=name if accepted else knn.UNKNOWN,
                    score=round(score, 6),
                    nearest=name if score > 0 else None,
                    threshold=None if not np.isfinite(threshold) else round(float(threshold), 6),
                    method=used,
                    scores={classes[c]: round(float(scores[i, c]), 6) for c in order[i, :top] if scores[i, c] > 0},
                    neighbours=[
                        {
                            "id": nid,
                            "similarity": round(sim, 6),
                            "concepts": records[nid].concepts,
                            "negatives": records[nid].negatives,
                            "source": records[nid].source,
                        }
                        for nid, _, sim, _ in (votes.neighbours[i] if votes else [])
                    ],
                )
            )
        return out

    def _vote(self, space: str, vectors: np.ndarray, view: LabelView, k: int, weighting: knn.Weighting) -> knn.Votes:
        fetch = k
        while True:
            sims, ids = self.store.search(space, vectors, fetch)
            votes = knn.vote(sims, ids, view, k=k, weighting=weighting)
            total = self.store.count(space)
            if all(len(nb) >= k for nb in votes.neighbours) or fetch >= total:
                return votes
            fetch = min(fetch * 4, total)  # frames/unlabelled rows crowd the top: look further

    def predict(
        self,
        media: Sequence[MediaLike] = (),
        *,
        texts: Sequence[str] = (),
        method: str = "auto",
        k: int | None = None,
        top: int = 5,
        faces: str = "largest",
    ) -> list[Prediction]:
        """Classify images/videos and texts.

        ``method``: ``knn`` (vote of stored neighbours), ``head`` (trained logistic head),
        ``zeroshot`` (concept names through the text tower, blended with any examples), or
        ``auto``: a fresh head if one exists, else k-NN, else zero-shot when the store has
        concepts but no examples at all.
        """
        if method not in METHODS:
            raise InvalidInputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        out = []
        for source, space, vec in self.embed(media, texts, faces=faces):
            out += self.predict_vectors(space, vec[None, :], method=method, k=k, top=top, sources=[source])
        return out

    def predict_stored(
        self, ids: Sequence[int], *, method: str = "auto", k: int | None = None, top: int = 5
    ) -> list[Prediction]:
        """Predict for already-stored inputs from their stored vectors (no embedding).

        The input itself is among its own neighbours when it is labelled.
        """
        out: list[Prediction] = []
        for input_id in ids:
            with self.store.reading():  # the input cannot vanish between reading its vector and voting
                space, vec = self.store.vector(input_id)
                out += self.predict_vectors(
                    space, vec[None, :], method=method, k=k, top=top, sources=[f"id:{input_id}"]
                )
        return out

    def calibration(self, space: str) -> knn.Calibration:
        """The space's 1:1 verification threshold, learned from its labelled examples (cached per generation)."""
        view = self.store.label_view(space)
        cached = self._calibrations.get(space)
        if cached is not None and cached[0] == view.generation:
            return cached[1]
        rows = _index.sample_rows(len(view.label_roots), knn.LOO_MAX_EXAMPLES, 0)  # read only what is used
        # a view of its own: the full view's lineage (changed classes, first rows, spare room) describes other rows
        sample = LabelView(
            view.generation,
            view.ids,
            view.roots,
            view.classes,
            view.label_roots[rows],
            view.matrix[rows],
            frames=view.frames,
        )
        ids, vecs = self.store.vectors(space, sample.label_roots.tolist())
        result = knn.verification_calibration(sample, ids, vecs)
        self._calibrations[space] = (view.generation, result)
        return result

    def verify(
        self,
        media: Sequence[MediaLike] = (),
        *,
        texts: Sequence[str] = (),
        concept: str,
        faces: str = "largest",
    ) -> list[dict[str, Any]]:
        """1:1 verification: is each input the ``concept``?

        The score is the best similarity to one of the concept's examples; the threshold is
        learned from the stored examples of all concepts (see :meth:`calibration`): the cut that
        best separates same-concept from other-concept scores. With one concept and fewer
        than two examples there is nothing to learn from, and the answer is not verified.
        """
        return self.verify_items(self._query_items(media, texts), concept=concept, faces=faces)

    def verify_items(self, items: Sequence[Item], *, concept: str, faces: str = "largest") -> list[dict[str, Any]]:
        """:meth:`verify` for decoded items."""
        name = check_concept_name(concept)
        out: list[dict[str, Any]] = []
        for source, space, vec in self.embed_items(items, faces=faces):
            with self.store.reading():
                members = self.store.concept_member_ids(space, name)
                if len(members) == 0:
                    raise InvalidInputError(f"concept {name!r} has no examples in the {space} space to verify against")
                sims, ids = self.store.search(space, vec[None, :], 1, restrict_to=members)
                cal = self.calibration(space)
            score = float(sims[0, 0])
            calibrated = bool(np.isfinite(cal.threshold))
            out.append(
                {
                    "source": source,
                    "concept": name,
                    "verified": bool(calibrated and score >= cal.threshold),
                    "score": round(score, 6),
                    "threshold": round(cal.threshold, 6) if calibrated else None,
                    "calibration": {"method": cal.method, "genuine": cal.genuine, "impostor": cal.impostor},
                    "nearest_id": int(ids[0, 0]),
                    "reason": None if calibrated else "too few examples to learn a threshold",
                }
            )
        return out

    def search(
        self,
        media: Sequence[MediaLike] = (),
        *,
        texts: Sequence[str] = (),
        k: int = 10,
        concept: str | None = None,
        faces: str = "largest",
    ) -> list[list[Hit]]:
        """Most similar stored inputs per query; ``concept`` restricts candidates before ranking."""
        if k <= 0:
            raise InvalidInputError(f"k must be positive, got {k}")
        out = []
        for _, space, vec in self.embed(media, texts, faces=faces):
            out.append(self.search_vectors(space, vec[None, :], k=k, concept=concept)[0])
        return out

    def search_vectors(
        self, space: str, vectors: np.ndarray, *, k: int = 10, concept: str | None = None
    ) -> list[list[Hit]]:
        """Search with already-embedded queries (one consistent view of the store)."""
        with self.store.reading():
            self._check_queryable(space)
            restrict = self.store.concept_member_ids(space, concept) if concept is not None else None
            if restrict is not None and len(restrict) == 0:
                return [[] for _ in range(len(vectors))]
            sims, ids = self.store.search(space, vectors, k, restrict_to=restrict)
            results: list[list[Hit]] = []
            for row_s, row_i in zip(sims, ids):
                keep = [(int(i), float(s)) for i, s in zip(row_i, row_s) if i >= 0]
                records = self.store.get([i for i, _ in keep])
                results.append(
                    [
                        Hit(r.id, round(s, 6), r.kind, r.source, r.text, r.parent_id, r.timestamp_s, r.concepts)
                        for r, (_, s) in zip(records, keep)
                    ]
                )
            return results

    def evaluate(
        self,
        *,
        method: str = "knn",
        space: str | None = None,
        folds: int = 5,
        k: int | None = None,
        out_dir: str | Path | None = None,
    ) -> dict[str, Any]:
        """Leave-one-out (k-NN) or k-fold (head) evaluation of the stored examples.

        Writes ``evaluation.json`` and PNG plots to ``out_dir`` (default: ``<store>/evaluation``)
        and returns the report with the written ``files``.
        """
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
        """Concepts with example counts."""
        return [c.to_dict() for c in self.store.concepts()]

    def add_concepts(self, names: Sequence[str]) -> None:
        """Create concepts with no examples yet (usable at once by zero-shot)."""
        self.store.create_concepts(names)

    def rename_concept(self, old: str, new: str) -> None:
        """Rename a concept."""
        self.store.rename_concept(old, new)

    def delete_concept(self, name: str) -> int:
        """Delete a concept's labels (its inputs stay); returns the number of labels removed."""
        return self.store.delete_concept(name)

    def delete(self, ids: Sequence[int]) -> list[int]:
        """Delete inputs by id (videos with their frames)."""
        return self.store.delete(ids)

    def info(self) -> dict[str, Any]:
        """Store summary."""
        return self.store.info()
