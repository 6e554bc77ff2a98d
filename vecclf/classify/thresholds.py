"""A store's open-set thresholds, kept current as it changes (the rule itself: :mod:`vecclf.classify.openset`).

Per space, each concept's evidence is cached: its genuine similarities, and for a sample of its examples
(kept with their vectors) the similarity of each one's nearest example of another concept, found by one
index search over the whole store. After a write only the concepts it touched are measured again — the
label view says which — so a new concept in a large store costs a search of its own examples, and the
older concepts' sampled examples are compared with the new ones (their nearest impostor may now be one).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from ..embed.registry import IDENTITY_KINDS
from ..labels import LabelView, locate, sample_rows
from ..store import Store
from . import openset


@dataclass
class _Sample:
    """A concept's examples searched for impostors: their vectors and nearest other-concept similarity."""

    vectors: np.ndarray
    nearest: np.ndarray


@dataclass
class _Evidence:
    generation: int
    genuine: dict[str, np.ndarray]
    impostor: dict[str, _Sample]


class _Stacked:
    """The older concepts' sampled vectors as one array, grown in place while concepts are only added: a new
    concept's examples meet all of them in one product rather than one per concept, and the array is not
    copied together again on each write. Each sample's ``vectors`` becomes a view of its rows: held once."""

    def __init__(self) -> None:
        self._held: list[tuple[str, np.ndarray]] = []  # (concept, the view its sample holds)
        self._rows = np.zeros((0, 0), np.float32)
        self.offsets = [0]

    def of(self, samples: list[tuple[str, _Sample]]) -> np.ndarray:
        """The ``samples`` (concept, sample) stacked in their order; concept ``i`` is rows
        ``offsets[i]:offsets[i+1]``."""
        n = len(self._held)
        if len(samples) < n or any(c != h[0] or s.vectors is not h[1] for (c, s), h in zip(samples, self._held)):
            self._held, self.offsets, n = [], [0], 0  # one was measured again or went: stacked again
            self._rows = np.zeros((0, 0), np.float32)
        dim = samples[0][1].vectors.shape[1] if samples else 0
        end = self.offsets[-1] + sum(len(s.vectors) for _, s in samples[n:])
        if end > len(self._rows) or self._rows.shape[1] != dim:
            grown = np.empty((end + end // 2, dim), np.float32)
            if n:
                grown[: self.offsets[-1]] = self._rows[: self.offsets[-1]]
            self._rows, self._held = grown, []
            for (c, s), start, stop in zip(samples[:n], self.offsets, self.offsets[1:]):
                s.vectors = grown[start:stop]
                self._held.append((c, s.vectors))
        for c, s in samples[n:]:
            start, stop = self.offsets[-1], self.offsets[-1] + len(s.vectors)
            self._rows[start:stop] = s.vectors
            s.vectors = self._rows[start:stop]
            self._held.append((c, s.vectors))
            self.offsets.append(stop)
        return self._rows[: self.offsets[-1]]


@dataclass(frozen=True)
class Thresholds:
    """A space's thresholds at one generation and quantile, and how they were set."""

    generation: int
    quantile: float
    values: dict[str, float]  # concept -> open-set similarity threshold (-inf: never unknown)
    verify: dict[str, float]  # concept -> verification threshold (never below its open-set one)
    calibration: openset.Calibration
    set_by_user: frozenset[str]  # concepts whose threshold a user set


class StoreThresholds:
    """Open-set thresholds of every space of ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._evidence: dict[str, _Evidence] = {}
        self._cached: dict[tuple[str, float], Thresholds] = {}
        self._quantiles: dict[str, openset.QuantileMemo] = {}
        self._stacked: dict[str, _Stacked] = {}
        self._lock = threading.Lock()  # readers predict at once; the evidence and its stack are updated in place

    @property
    def identity(self) -> bool:
        """Whether the store's embedder was trained to separate identities (faces)."""
        return self.store.spec.get("kind") in IDENTITY_KINDS

    def get(self, space: str, view: LabelView, quantile: float) -> Thresholds:
        """The thresholds of ``space`` for ``view`` (its current labels) at ``quantile``."""
        cached = self._cached.get((space, quantile))
        if cached is not None and cached.generation == view.generation:
            return cached
        # The store's read lock first, always: a caller not yet reading would otherwise wait for a writer while
        # holding this lock, and the writer for a reader waiting on this lock.
        with self.store.reading(), self._lock:
            return self._computed(space, view, quantile)

    def _computed(self, space: str, view: LabelView, quantile: float) -> Thresholds:
        cached = self._cached.get((space, quantile))
        if cached is not None and cached.generation == view.generation:  # another thread made them meanwhile
            return cached
        ev = self._current(space, view)
        impostors = {c: sample.nearest[np.isfinite(sample.nearest)] for c, sample in ev.impostor.items()}
        memo = self._quantiles.setdefault(space, {})
        for gone in set(memo) - set(ev.genuine):
            del memo[gone]
        calibrated = openset.calibrate(ev.genuine, impostors, quantile=quantile, identity=self.identity, memo=memo)
        values, verify = calibrated.open_set, calibrated.verify
        chosen = {c: v for c, v in self.store.concept_thresholds().items() if c in values}
        values.update(chosen)
        verify.update(chosen)
        result = Thresholds(view.generation, quantile, values, verify, calibrated.calibration, frozenset(chosen))
        self._cached = {key: t for key, t in self._cached.items() if key[0] != space or t.generation == view.generation}
        self._cached[(space, quantile)] = result
        return result

    def _current(self, space: str, view: LabelView) -> _Evidence:
        cached = self._evidence.get(space)
        if cached is not None and cached.generation == view.generation:
            return cached
        changed = view.changed_since(cached.generation) if cached is not None else None
        alone = len(view.classes) < 2  # a concept measured while it was the only one has no sampled examples:
        keep = (  # it is measured again once another one comes
            {
                c
                for c in view.classes
                if c in cached.genuine and c not in changed and (alone or len(cached.impostor[c].vectors))
            }
            if cached is not None and changed is not None
            else set()
        )
        genuine = {c: cached.genuine[c] for c in keep} if cached else {}
        impostor = (
            {c: _Sample(cached.impostor[c].vectors, cached.impostor[c].nearest.copy()) for c in keep} if cached else {}
        )
        stale = [j for j, c in enumerate(view.classes) if c not in keep]
        if stale:
            self._measure(space, view, stale, genuine, impostor)
        ev = _Evidence(view.generation, genuine, impostor)
        self._evidence[space] = ev
        return ev

    def _measure(
        self,
        space: str,
        view: LabelView,
        stale: list[int],
        genuine: dict[str, np.ndarray],
        impostor: dict[str, _Sample],
    ) -> None:
        """Evidence of the ``stale`` concepts (columns of ``view``), and its effect on the others'."""
        samples = []
        for j in stale:  # at most the sample each concept's evidence is computed from, not whole concepts
            members = view.members(j)
            samples.append(members[sample_rows(len(members), openset.LOO_MAX_EXAMPLES, 0)])
        ids, vecs = self.store.vectors(space, np.unique(np.concatenate(samples)).tolist())
        rows_of = []
        for j, members in zip(stale, samples):
            pos, ok = locate(ids, members)  # a member deleted meanwhile is skipped
            genuine[view.classes[j]] = openset.genuine_similarities(vecs[pos[ok]])
            rows_of.append((j, members[ok], pos[ok]))
        picked = []
        for j, members, pos in rows_of:  # a smaller sample is searched for its nearest impostors
            keep = sample_rows(len(members), openset.IMPOSTOR_EXAMPLES, 1)
            picked.append((j, members[keep], pos[keep]))
        rows_of = picked
        queries = np.concatenate([pos for _, _, pos in rows_of])
        if len(queries) == 0 or len(view.classes) < 2:  # with one concept there are no impostors
            for j, _, _ in rows_of:
                impostor[view.classes[j]] = _Sample(np.zeros((0, vecs.shape[1]), np.float32), np.zeros(0))
            return
        older = {c: sample for c, sample in impostor.items()}
        sims, found = self.store.search(space, vecs[queries], openset.IMPOSTOR_K)
        _, rows = view.rows_for(found)
        labelled = rows >= 0
        positive = np.where(labelled[..., None], view.matrix[np.where(labelled, rows, 0)] > 0, False)
        start = 0
        for j, _, pos in rows_of:
            end = start + len(pos)
            other = positive[start:end].any(axis=2) & ~positive[start:end, :, j]
            impostor[view.classes[j]] = _Sample(vecs[pos], openset.nearest_impostors(sims[start:end], other))
            start = end
        # The new examples may now be an older concept's nearest impostors. Older concepts are not stale, so
        # every new example is another concept's; those also labelled with the older one are no impostors.
        if not older:
            return
        new_vectors = vecs[queries]
        labelled = view.matrix[locate(view.label_roots, np.concatenate([m for _, m, _ in rows_of]))[0]] > 0
        column_of = {c: j for j, c in enumerate(view.classes)}
        order = [c for c in view.classes if c in older]  # each with sampled examples: see _current's keep
        stacked = self._stacked.setdefault(space, _Stacked())
        rows = stacked.of([(c, older[c]) for c in order])
        near = rows @ new_vectors.T  # (older examples, new examples)
        columns = np.repeat([column_of[c] for c in order], np.diff(stacked.offsets)).astype(np.int64)
        near[labelled[:, columns].T] = -np.inf
        near[near >= openset.SAME_EXAMPLE] = -np.inf
        best = near.max(axis=1, initial=-np.inf)
        for c, start, end in zip(order, stacked.offsets, stacked.offsets[1:]):
            np.maximum(older[c].nearest, best[start:end], out=older[c].nearest)
