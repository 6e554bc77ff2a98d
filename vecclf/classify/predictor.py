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
from ..labels import UNKNOWN, LabelView, check_concept_name, locate, sample_rows
from ..store import SpaceState, Store
from . import knn, openset, zeroshot
from .head import HeadWeights


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


@dataclass
class _Thresholds:
    generation: int
    quantile: float
    loo: dict[str, np.ndarray]  # each concept's leave-one-out similarities
    values: dict[str, float]


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
        self._thresholds: dict[str, _Thresholds] = {}
        self._calibrations: dict[str, tuple[int, openset.Calibration]] = {}
        self._heads: dict[str, tuple[int, HeadWeights]] = {}

    # ------------------------------------------------------------------ what answers are computed from
    def thresholds(self, space: str, view: LabelView | None = None) -> dict[str, float]:
        """Open-set thresholds of each concept in ``space`` (``view``: its current labels, when known).

        After a write only the concepts it touched are recomputed (the label view says which),
        so a new concept in a large store reads just its own examples.
        """
        view = view if view is not None else self.store.label_view(space)
        cached = self._thresholds.get(space)
        if cached is not None and (cached.generation, cached.quantile) == (view.generation, self.unknown_quantile):
            return cached.values
        changed = view.changed_since(cached.generation) if cached is not None else None
        old_loo = cached.loo if cached is not None and changed is not None else {}
        old_values = cached.values if cached is not None and cached.quantile == self.unknown_quantile else {}
        unchanged = {c for c in view.classes if c in old_loo and c not in (changed or ())}
        loo = {c: old_loo[c] for c in unchanged}
        stale = [j for j, c in enumerate(view.classes) if c not in unchanged]
        if stale:
            wanted = []
            for j in stale:  # read at most the sample each threshold is computed from, not whole classes
                members = view.members(j)
                wanted.append(members[sample_rows(len(members), openset.LOO_MAX_EXAMPLES, 0)])
            ids, vecs = self.store.vectors(space, np.unique(np.concatenate(wanted)).tolist())
            for j, members in zip(stale, wanted):
                pos, ok = locate(ids, members)  # a member deleted meanwhile is skipped
                loo[view.classes[j]] = openset.loo_similarities(vecs[pos[ok]])
        known = {c: old_values[c] for c in unchanged if c in old_values}
        values = openset.thresholds_from_loo(loo, quantile=self.unknown_quantile, known=known)
        self._thresholds[space] = _Thresholds(view.generation, self.unknown_quantile, loo, values)
        return values

    def calibration(self, space: str) -> openset.Calibration:
        """The space's 1:1 verification threshold, learned from its labelled examples (kept per generation)."""
        view = self.store.label_view(space)
        cached = self._calibrations.get(space)
        if cached is not None and cached[0] == view.generation:
            return cached[1]
        sample = view.rows(sample_rows(len(view.label_roots), openset.LOO_MAX_EXAMPLES, 0))  # read only what is used
        ids, vecs = self.store.vectors(space, sample.label_roots.tolist())
        result = openset.verification_calibration(sample, ids, vecs)
        self._calibrations[space] = (view.generation, result)
        return result

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
        with self.store.reading():
            return self._predict(space, np.asarray(vectors, dtype=np.float32), method, k, top, weighting, sources)

    def _predict(
        self,
        space: str,
        vectors: np.ndarray,
        method: str,
        k: int,
        top: int,
        weighting: knn.Weighting,
        sources: Sequence[str] | None,
    ) -> list[Prediction]:
        state = self.store.state(space)  # one read of what this batch is answered from
        found = self._head(state) if method in ("auto", "head") else None
        used = self._choose(state, method, found)
        view = state.view
        if not view.classes and used != "zeroshot":
            self.check_queryable(space, state.vectors)
            raise InvalidInputError("no labelled examples to classify with; add examples with a concept first")
        votes = self._vote(state, vectors, k, weighting) if view.classes else None
        thresholds: dict[str, float] = {}
        classes: list[str]
        if used == "knn":
            assert votes is not None
            classes, scores, support = view.classes, votes.scores, votes.support
            thresholds = self.thresholds(space, view)
        elif used == "head":
            if found is None:
                from ..errors import NotFittedError  # scikit-learn's too: imported only when needed

                raise NotFittedError("no head trained for this store yet; run `vecclf train` (or use --method knn)")
            head, _ = found
            classes, scores = list(head.classes), head.predict_proba(vectors)
            support = scores
            if head.mode == "multilabel":
                thresholds = dict.fromkeys(classes, 0.5)
        else:
            classes, scores = self._zeroshot(space, vectors, view, votes)
            support = scores
        order = knn.rank(scores, support)
        neighbour_ids = sorted({nb[0] for row in votes.neighbours for nb in row}) if votes else []
        records = {r.id: r for r in self.store.get(neighbour_ids)}
        out: list[Prediction] = []
        for i in range(len(vectors)):
            best = int(order[i, 0])
            name = classes[best]
            score = float(scores[i, best])
            threshold = thresholds.get(name, -np.inf)
            accepted = score > 0 and float(support[i, best]) >= threshold
            out.append(
                Prediction(
                    source=sources[i] if sources else f"<query {i}>",
                    concept=name if accepted else UNKNOWN,
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
        self, space: str, vectors: np.ndarray, *, k: int = DEFAULT_K, concept: str | None = None
    ) -> list[list[Hit]]:
        """The ``k`` most similar stored inputs to each query; ``concept`` restricts them before ranking."""
        with self.store.reading():
            self.check_queryable(space)
            restrict = self.store.concept_member_ids(space, concept) if concept is not None else None
            if restrict is not None and len(restrict) == 0:
                return [[] for _ in range(len(vectors))]
            sims, ids = self.store.search(space, vectors, k, restrict_to=restrict)
            keep = [[(int(i), float(s)) for i, s in zip(row_i, row_s) if i >= 0] for row_s, row_i in zip(sims, ids)]
            records = {r.id: r for r in self.store.get(sorted({i for row in keep for i, _ in row}))}
        return [
            [
                Hit(r.id, round(s, 6), r.kind, r.source, r.text, r.parent_id, r.timestamp_s, r.concepts)
                for i, s in row
                for r in (records[i],)
            ]
            for row in keep
        ]

    # ------------------------------------------------------------------ verifying
    def verify(self, space: str, vectors: np.ndarray, concept: str, sources: Sequence[str]) -> list[dict[str, Any]]:
        """1:1 verification of each query against ``concept``: the best similarity to one of its examples,
        against the space's calibrated threshold (see :meth:`calibration`)."""
        name = check_concept_name(concept)
        with self.store.reading():
            members = self.store.concept_member_ids(space, name)
            if len(members) == 0:
                raise InvalidInputError(f"concept {name!r} has no examples in the {space} space to verify against")
            sims, ids = self.store.search(space, np.asarray(vectors, np.float32), 1, restrict_to=members)
            cal = self.calibration(space)
        calibrated = bool(np.isfinite(cal.threshold))
        return [
            {
                "source": source,
                "concept": name,
                "verified": bool(calibrated and float(sims[i, 0]) >= cal.threshold),
                "score": round(float(sims[i, 0]), 6),
                "threshold": round(cal.threshold, 6) if calibrated else None,
                "calibration": {"method": cal.method, "genuine": cal.genuine, "impostor": cal.impostor},
                "nearest_id": int(ids[i, 0]),
                "reason": None if calibrated else "too few examples to learn a threshold",
            }
            for i, source in enumerate(sources)
        ]
