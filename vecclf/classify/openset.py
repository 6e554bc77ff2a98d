"""Open-set thresholds and 1:1 verification thresholds, learned from the stored examples (numpy only).

A concept's open-set threshold comes from the leave-one-out similarity of each of its examples to the
nearest other example of the same concept; the verification threshold of a space separates
same-concept from other-concept scores. :class:`ThresholdCache` keeps both per space and recomputes
only the concepts a write touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError
from ..labels import LabelView, locate, sample_rows

LOO_MAX_EXAMPLES = 2000  # examples per class behind an open-set threshold (a seeded sample beyond this)


def loo_similarities(vectors: np.ndarray, *, max_examples: int = LOO_MAX_EXAMPLES, seed: int = 0) -> np.ndarray:
    """Leave-one-out nearest-neighbour similarity of each example to the others of its class."""
    if len(vectors) < 2:
        return np.zeros(0, dtype=np.float64)
    if len(vectors) > max_examples:
        vectors = vectors[sample_rows(len(vectors), max_examples, seed)]
    gram = vectors @ vectors.T
    np.fill_diagonal(gram, -np.inf)
    return gram.max(axis=1).astype(np.float64)


def open_set_thresholds(
    class_vectors: dict[str, np.ndarray], *, quantile: float, min_examples: int = 5, seed: int = 0
) -> dict[str, float]:
    """Per-class similarity thresholds below which a query is answered ``unknown``.

    The ``quantile`` of the class's leave-one-out nearest-example similarities; classes
    with fewer than ``min_examples`` use the pooled distribution of all classes; with no
    pooled evidence at all, no threshold (``-inf``).
    """
    loo = {c: loo_similarities(v, seed=seed) for c, v in class_vectors.items()}
    return thresholds_from_loo(loo, quantile=quantile, min_examples=min_examples)


def thresholds_from_loo(
    loo: dict[str, np.ndarray], *, quantile: float, min_examples: int = 5, known: Mapping[str, float] | None = None
) -> dict[str, float]:
    """:func:`open_set_thresholds` from each class's leave-one-out similarities (see :func:`loo_similarities`).

    ``known`` holds thresholds already computed from the same similarities (at the same quantile) for classes
    that have not changed: they are kept, except fallbacks, which depend on every class.
    """
    if not 0.0 <= quantile < 1.0:
        raise InvalidInputError(f"unknown quantile must be in [0, 1), got {quantile}")
    known = known or {}
    out: dict[str, float] = {}
    small = []
    for c, s in loo.items():
        if quantile == 0:
            out[c] = -np.inf
        elif len(s) < min_examples:
            small.append(c)
        else:
            out[c] = known[c] if c in known else float(np.quantile(s, quantile))
    if small:
        pooled = np.concatenate(list(loo.values()))
        fallback = float(np.quantile(pooled, quantile)) if len(pooled) >= min_examples else -np.inf
        out.update(dict.fromkeys(small, fallback))
    return out


def class_vectors(view: LabelView, ids: np.ndarray, vectors: np.ndarray) -> dict[str, np.ndarray]:
    """Vectors of each class's positive examples (a video is represented by its pooled vector)."""
    out: dict[str, np.ndarray] = {}
    pos, present = locate(ids, view.label_roots)
    for c, name in enumerate(view.classes):
        members = present & (view.matrix[:, c] > 0)
        out[name] = vectors[pos[members]]
    return out


@dataclass(frozen=True)
class Calibration:
    """A 1:1 verification threshold and the evidence it was learned from."""

    threshold: float  # -inf when there was nothing to learn from
    method: str  # balanced-error | impostors-only | genuine-only | none
    genuine: int  # same-concept scores used
    impostor: int  # other-concept scores used


def _balanced_error_threshold(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """The cut that minimises (false-reject rate + false-accept rate) / 2, centred among equal cuts."""
    scores = np.unique(np.concatenate([genuine, impostor]))
    cuts = np.concatenate([[scores[0] - 1e-6], (scores[:-1] + scores[1:]) / 2, [scores[-1] + 1e-6]])
    g, i = np.sort(genuine), np.sort(impostor)
    frr = np.searchsorted(g, cuts, side="left") / len(g)  # genuine below the cut
    far = 1.0 - np.searchsorted(i, cuts, side="left") / len(i)  # impostors at or above it
    ber = (frr + far) / 2
    best = np.flatnonzero(ber <= ber.min() + 1e-12)
    return float(cuts[best[len(best) // 2]])


def verification_calibration(
    view: LabelView,
    ids: np.ndarray,
    vectors: np.ndarray,
    *,
    far: float = 0.01,
    quantile: float = 0.01,
    max_examples: int = 2000,
    seed: int = 0,
) -> Calibration:
    """One threshold for 1:1 verification in a space, learned from its labelled examples.

    A score is the best similarity to a concept's examples. Genuine scores: each example against
    the other examples of its concept (leave-one-out); impostor scores: each example against a
    concept it does not belong to. With both, the balanced-error cut; with impostors only (one
    photo per concept), the cut that accepts a fraction ``far`` of them; with genuine scores only,
    their ``quantile``.
    """
    pos, present = locate(ids, view.label_roots)
    members = view.matrix[present] > 0
    V = vectors[pos[present]]
    if len(V) > max_examples:
        pick = sample_rows(len(V), max_examples, seed)
        V, members = V[pick], members[pick]
    sims = V @ V.T
    np.fill_diagonal(sims, -np.inf)
    genuine, impostor = [], []
    for c in range(members.shape[1]):
        m = members[:, c]
        if not m.any():
            continue
        best = sims[:, m].max(axis=1)
        genuine.append(best[m][np.isfinite(best[m])])
        impostor.append(best[~m])
    g = np.concatenate(genuine) if genuine else np.zeros(0)
    i = np.concatenate(impostor) if impostor else np.zeros(0)
    if len(g) and len(i):
        return Calibration(_balanced_error_threshold(g, i), "balanced-error", len(g), len(i))
    if len(i):
        return Calibration(float(np.quantile(i, 1.0 - far)), "impostors-only", 0, len(i))
    if len(g) >= 2:
        return Calibration(float(np.quantile(g, quantile)), "genuine-only", len(g), 0)
    return Calibration(-np.inf, "none", len(g), 0)
