"""A batch of query vectors in, answers out: one search, one head call and one vectorised vote per batch;
likewise verifications and similarity searches.

:class:`Predictor` reads a :class:`~vecclf.store.Store` under one consistent view per batch and keeps
what answers are computed from — open-set thresholds, verification calibrations, loaded heads — per
space, recomputed only as far as the writes since require.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import DEFAULT_K, DEFAULT_TOP, DEFAULT_UNKNOWN_QUANTILE, METHODS
from ..embed import Embedder
from ..errors import InvalidInputError, ModalityError
from ..labels import UNKNOWN, LabelView, check_concept_name
from ..store import SpaceState, Store
from . import knn, openset, zeroshot
from .head import HeadWeights
from .thresholds import StoreThresholds, Thresholds


@dataclass(frozen=True)
class Prediction:
    """A prediction with its evidence.

    ``concept`` is ``"unknown"`` when the best concept falls below its open-set threshold (``rejected_by`` says
    which rule); ``nearest`` is the best concept regardless.
    """

    source: str
    concept: str
    score: float
    nearest: str | None
    similarity: float | None  # of the nearest stored example of ``nearest``: what ``threshold`` is held against
    threshold: float | None
    rejected_by: str | None  # why the answer is "unknown": nearest-example | negative-votes | below-0.5
    method: str
    stale: bool  # answered by a head trained before the store's last change
    scores: dict[str, float]
    neighbours: list[dict[str, Any]]
    text: str | None = None  # the query's text, for text queries

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


class Predictor:
    """Answers for query vectors from one store: k-NN, head, zero-shot and 1:1 verification.

    ``embedder`` is called (lazily) only for zero-shot prompts and to tell which space texts go to.
    """

    def __init__(
        self,
        store: Store,
        embedder: Callable[[], Embedder],
        *,
        k: int = DEFAULT_K,
        unknown_quantile: float = DEFAULT_UNKNOWN_QUANTILE,
    ) -> None:
        self.store = store
        self.k = k
        self.unknown_quantile = unknown_quantile
        self._embedder = embedder
        self._thresholds = StoreThresholds(store)
        self._heads: dict[str, tuple[int, HeadWeights]] = {}

    # ------------------------------------------------------------------ what answers are computed from
    def thresholds(
        self, space: str, view: LabelView | None = None, *, unknown_quantile: float | None = None
    ) -> dict[str, float]:
        """Open-set thresholds of each concept in ``space`` (``view``: its current labels, when known); the rule
        is :mod:`vecclf.classify.openset`'s, and a threshold a user set replaces the learned one."""
        return self.threshold_state(space, view, unknown_quantile=unknown_quantile).values

    def warm(self) -> None:
        """Compute every labelled space's thresholds now, so the first prediction does not."""
        for space in self.store.spaces:
            view = self.store.label_view(space)
            if view.classes:
                self.threshold_state(space, view)

    def calibration(self, space: str) -> openset.Calibration:
        """How the thresholds of ``space`` were set, and from how much evidence."""
        return self.threshold_state(space).calibration

    def threshold_state(
        self, space: str, view: LabelView | None = None, *, unknown_quantile: float | None = None
    ) -> Thresholds:
        """The thresholds of ``space`` with how they were set (``unknown_quantile``: else the predictor's)."""
        view = view if view is not None else self.store.label_view(space)
        q = self.unknown_quantile if unknown_quantile is None else openset.check_quantile(unknown_quantile)
        return self._thresholds.get(space, view, q)

    def head(self, space: str) -> tuple[HeadWeights, bool] | None:
        """The stored head for ``space`` and whether it is fresh (trained at the current generation)."""
        return self._head(self.store.state(space))

    def _head(self, state: SpaceState) -> tuple[HeadWeights, bool] | None:
        space, gen = state.space, state.head_generation
        if gen is None:
            return None
        cached = self._heads.get(space)
        if cached is None or cached[0] != gen:
            stored = self.store.load_head(space)
            if stored is None:  # deleted meanwhile
                return None
            gen, meta, arrays, _ = stored
            cached = (gen, HeadWeights.from_state(meta, arrays))
            self._heads[space] = cached
        return cached[1], cached[0] == state.generation

    def remember_head(self, space: str, generation: int, head: HeadWeights) -> None:
        """Keep a just-trained head (saved by the caller) without reading it back."""
        self._heads[space] = (generation, head)

    def check_queryable(self, space: str, count: int | None = None) -> None:
        """Refuse a query into a space that holds nothing while another space has examples (no cross-modal)."""
        if (self.store.count(space) if count is None else count) == 0:
            other = [s for s in self.store.spaces if s != space and self.store.count(s) > 0]
            if other:
                raise ModalityError(
                    f"this store keeps {space} inputs in their own space and it holds no {space} examples "
                    f"(examples exist only in: {', '.join(other)}); the {self.store.identity.get('kind')} embedder "
                    "cannot compare across modalities — use a joint (CLIP) model for cross-modal queries"
                )

    # ------------------------------------------------------------------ predicting
    def _choose(self, state: SpaceState, method: str, head: tuple[HeadWeights, bool] | None) -> str:
        if method != "auto":
            return method
        if head is not None and head[1]:
            return "head"
        if state.view.classes:
            return "knn"
        no_examples = all(not self.store.label_view(sp).classes for sp in self.store.spaces)
        emb = self._embedder()
        text_here = "text" in emb.modalities and emb.space_of("text") == state.space
        if no_examples and self.store.concepts() and text_here:
            return "zeroshot"  # only concept names so far
        return "knn"

    def predict(
        self,
        space: str,
        vectors: np.ndarray,
        *,
        method: str = "auto",
        k: int | None = None,
        top: int = DEFAULT_TOP,
        weighting: knn.Weighting = "similarity",
        sources: Sequence[str] | None = None,
        unknown_quantile: float | None = None,
    ) -> list[Prediction]:
        """Predictions for a batch of query vectors in ``space``, read under one consistent view of the store.

        ``method``: ``knn`` (vote of stored neighbours), ``head`` (trained logistic head), ``zeroshot``
        (concept names through the text tower, blended with any examples), or ``auto``: a fresh head if
        one exists, else k-NN, else zero-shot when the store has concepts but no examples at all.
        """
        k = self.k if k is None else k
        if k <= 0 or top <= 0:
            raise InvalidInputError("k and top must be positive")
        if method not in METHODS:
            raise InvalidInputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        q = self.unknown_quantile if unknown_quantile is None else openset.check_quantile(unknown_quantile)
        with self.store.reading():
            return self._predict(space, np.asarray(vectors, dtype=np.float32), method, k, top, weighting, sources, q)

    def _predict(
        self,
        space: str,
        vectors: np.ndarray,
        method: str,
        k: int,
        top: int,
        weighting: knn.Weighting,
        sources: Sequence[str] | None,
        quantile: float,
    ) -> list[Prediction]:
        state = self.store.state(space)  # one read of what this batch is answered from
        found = self._head(state) if method in ("auto", "head") else None
        used = self._choose(state, method, found)
        view = state.view
        if not view.classes and used != "zeroshot":
            self.check_queryable(space, state.vectors)
            raise InvalidInputError("no labelled examples to classify with; add examples with a concept first")
        votes = self._vote(state, vectors, k, weighting) if view.classes else None
        thresholds = self.thresholds(space, view, unknown_quantile=quantile) if view.classes else {}
        classes: list[str]
        multilabel = False
        if used == "knn":
            assert votes is not None
            classes, scores, tiebreak = view.classes, votes.scores, votes.support
        elif used == "head":
            if found is None:
                from ..errors import NotFittedError  # scikit-learn's too: imported only when needed

                raise NotFittedError("no head trained for this store yet; run `vecclf train` (or use --method knn)")
            head = found[0]
            classes, scores, multilabel = list(head.classes), head.predict_proba(vectors), head.mode == "multilabel"
            tiebreak = scores
        else:
            classes, scores = self._zeroshot(space, vectors, view, votes)
            tiebreak = scores
        order = knn.rank(scores, tiebreak)
        best = order[:, 0]
        answered = [classes[b] for b in best]
        nearest = self._nearest_similarity(space, vectors, answered, view, votes)
        records = self.store.shared_records(nb[0] for row in votes.neighbours for nb in row) if votes else {}
        stale = used == "head" and found is not None and not found[1]
        out: list[Prediction] = []
        for i in range(len(vectors)):
            name, score = answered[i], float(scores[i, best[i]])
            threshold = thresholds.get(name, -np.inf)
            similarity = nearest[i]
            rejected_by = None
            if score <= 0:
                rejected_by = "negative-votes"
            elif multilabel and score < 0.5:
                rejected_by = "below-0.5"
            elif similarity is not None and similarity < threshold:
                rejected_by = "nearest-example"
            out.append(
                Prediction(
                    source=sources[i] if sources else f"<query {i}>",
                    concept=UNKNOWN if rejected_by else name,
                    score=round(score, 6),
                    nearest=name if score > 0 else None,
                    similarity=None if similarity is None else round(similarity, 6),
                    threshold=None if not np.isfinite(threshold) else round(float(threshold), 6),
                    rejected_by=rejected_by,
                    method=used,
                    stale=stale,
                    scores={classes[c]: round(float(scores[i, c]), 6) for c in order[i, :top] if scores[i, c] > 0},
                    neighbours=[
                        {
                            "id": nid,
                            "similarity": round(sim, 6),
                            "concepts": list(rec.concepts),  # the records are the store's: hand out copies
                            "negatives": list(rec.negatives),
                            "source": rec.source,
                            "text": rec.text,
                        }
                        for nid, _, sim, _ in (votes.neighbours[i] if votes else [])
                        for rec in (records[nid],)
                    ],
                )
            )
        return out

    def _nearest_similarity(
        self, space: str, vectors: np.ndarray, answered: list[str], view: LabelView, votes: knn.Votes | None
    ) -> list[float | None]:
        """For each query, its similarity to the nearest stored example of the concept it was answered (None for a
        concept without examples). The vote's neighbours hold it whenever any example of that concept is among
        them; the rest (head and zero-shot answers) are searched among that concept's examples."""
        column = {c: j for j, c in enumerate(view.classes)}
        out: list[float | None] = [None] * len(answered)
        missing: dict[str, list[int]] = {}
        for i, name in enumerate(answered):
            j = column.get(name)
            if j is None:
                continue
            value = float(votes.support[i, j]) if votes is not None else -np.inf
            if np.isfinite(value):
                out[i] = value
            else:
                missing.setdefault(name, []).append(i)
        for name, rows in missing.items():
            members = self.store.concept_member_ids(space, name)
            if len(members):
                sims, _ = self.store.search(space, vectors[rows], 1, restrict_to=members)
                for i, sim in zip(rows, sims[:, 0]):
                    out[i] = float(sim)
        return out

    def _zeroshot(
        self, space: str, vectors: np.ndarray, view: LabelView, votes: knn.Votes | None
    ) -> tuple[list[str], np.ndarray]:
        classes = [c.name for c in self.store.concepts()]
        if not classes:
            raise InvalidInputError("no concepts yet: add examples or create concepts (vecclf concepts add NAME)")
        scores = zeroshot.zeroshot_proba(vectors, zeroshot.prompt_vectors(self._embedder(), classes, space))
        if votes is not None:
            counts = np.zeros(len(classes))
            col = {c: j for j, c in enumerate(classes)}
            knn_full = np.zeros_like(scores)
            for j, name in enumerate(view.classes):
                counts[col[name]] = len(view.members(j))
                knn_full[:, col[name]] = votes.scores[:, j]
            scores = zeroshot.blend(scores, knn_full, counts)
        return classes, scores

    def _vote(self, state: SpaceState, vectors: np.ndarray, k: int, weighting: knn.Weighting) -> knn.Votes:
        fetch, total = k, state.vectors
        while True:
            sims, ids = self.store.search(state.space, vectors, fetch)
            votes = knn.vote(sims, ids, state.view, k=k, weighting=weighting)
            if all(len(nb) >= k for nb in votes.neighbours) or fetch >= total:
                return votes
            fetch = min(fetch * 4, total)  # frames/unlabelled rows crowd the top: look further

    # ------------------------------------------------------------------ searching
    def search(
        self, space: str, vectors: np.ndarray, *, k: int = DEFAULT_K, concept: str | None = None, collapse: bool = True
    ) -> list[list[Hit]]:
        """The ``k`` most similar stored inputs to each query; ``concept`` restricts them before ranking.

        ``collapse``: a video and its frames are one hit (the video, with the time of its best frame), not one hit
        each.
        """
        with self.store.reading():
            self.check_queryable(space)
            restrict = self.store.concept_member_ids(space, concept) if concept is not None else None
            if restrict is not None and len(restrict) == 0:
                return [[] for _ in range(len(vectors))]
            view = self.store.label_view(space)
            collapse = collapse and view.has_frames
            sims, ids = self.store.search(space, vectors, k * 4 if collapse else k, restrict_to=restrict)
            roots = view.rows_for(ids)[0] if collapse else ids
            keep: list[list[tuple[int, int, float]]] = []  # per query: (shown id, matched id, similarity)
            for row_s, row_i, row_r in zip(sims, ids, roots):
                seen: set[int] = set()
                chosen: list[tuple[int, int, float]] = []
                for s, i, r in zip(row_s, row_i, row_r):
                    shown_id = int(r) if collapse and r >= 0 else int(i)
                    if i >= 0 and shown_id not in seen and len(chosen) < k:
                        seen.add(shown_id)
                        chosen.append((shown_id, int(i), float(s)))
                keep.append(chosen)
            wanted = sorted({x for row in keep for hit in row for x in hit[:2]})
            records = {r.id: r for r in self.store.get(wanted)}
        return [
            [
                Hit(r.id, round(sim, 6), r.kind, r.source, r.text, r.parent_id, m.timestamp_s, r.concepts)
                for shown_id, matched, sim in row
                for r, m in ((records[shown_id], records[matched]),)
            ]
            for row in keep
        ]

    # ------------------------------------------------------------------ verifying
    def verify(
        self,
        space: str,
        vectors: np.ndarray,
        concept: str,
        sources: Sequence[str],
        *,
        unknown_quantile: float | None = None,
    ) -> list[dict[str, Any]]:
        """1:1 verification of each query against ``concept``: its best similarity to one of the concept's examples,
        against the concept's threshold — the same one below which predictions answer "unknown"."""
        name = check_concept_name(concept)
        with self.store.reading():
            members = self.store.concept_member_ids(space, name)
            if len(members) == 0:
                raise InvalidInputError(f"concept {name!r} has no examples in the {space} space to verify against")
            sims, ids = self.store.search(space, np.asarray(vectors, np.float32), 1, restrict_to=members)
            state = self.threshold_state(space, unknown_quantile=unknown_quantile)
        threshold = state.verify.get(name, -np.inf)
        cal = state.calibration
        calibrated = bool(np.isfinite(threshold))
        return [
            {
                "source": source,
                "concept": name,
                "verified": bool(calibrated and float(sims[i, 0]) >= threshold),
                "score": round(float(sims[i, 0]), 6),
                "threshold": round(threshold, 6) if calibrated else None,
                "calibration": {
                    "method": "set" if name in state.set_by_user else cal.method,
                    "genuine": cal.genuine,
                    "impostor": cal.impostor,
                },
                "nearest_id": int(ids[i, 0]),
                "reason": None if calibrated else "too few examples to learn a threshold",
            }
            for i, source in enumerate(sources)
        ]
