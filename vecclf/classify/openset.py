"""Open-set thresholds, learned from the stored examples: when an answer is "unknown" (numpy only).

One threshold per concept, on one score: the similarity of a query to the concept's nearest stored example.
Predictions of every method answer "unknown" below it, and 1:1 verification accepts from it, so the two
always agree. It is set from two kinds of evidence:

- *genuine* similarities: each example's similarity to the nearest other example of its own concept
  (leave-one-out; identical vectors — duplicates — are the same example and never count);
- *impostor* similarities: each example's similarity to the nearest example of another concept.

The rule, with ``q`` the unknown quantile (default 1%):

1. ``T``, the space's cut between genuine and impostor: with both kinds (at least five of each), the point
   where their normal fits are equally many standard deviations away (``(mu_i*sd_g + mu_g*sd_i) / (sd_g +
   sd_i)``). For a model trained to separate identities (faces), whose strangers are like the other enrolled
   identities, no higher than the impostors' fitted ``1 - q`` quantile (``mu_i + z*sd_i``): rejecting all but
   ``q`` of them is enough. With impostors only (one example per concept): for such a model, that fitted
   quantile; for any other model, their ``q`` quantile (only what is less similar to every concept than
   almost every pair of concepts is) — other concepts tell little of what an unrelated query looks like.
2. A concept's own estimate keeps ``1 - q`` of genuine answers: the ``q`` quantile of its genuine
   similarities, shrunk toward the pooled quantile of all concepts by its number of examples ``n``:
   ``(n * own + m * pooled) / (n + m)`` with ``m = 1/q`` (a concept weighs half once it has the ``1/q``
   examples a ``q`` quantile needs to be seen at all).
3. The threshold is the lower of the two, so an open-set answer never rejects more genuine queries than
   ``q`` (as far as the examples tell), and a clean separation (faces) puts it between the two kinds.

1:1 verification accepts from the higher of the concept's open-set threshold and the space's cut ``T`` (with
impostors only: their fitted ``1 - q`` quantile, for any model), so it stays strict where genuine and impostor
overlap (texts, generic images), while a verified input is never answered "unknown" with that concept nearest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from ..errors import InvalidInputError
from ..labels import sample_rows

Result = tuple[np.ndarray, np.ndarray]
LOO_MAX_EXAMPLES = 2000  # examples per concept behind its genuine similarities (a seeded sample beyond this)
IMPOSTOR_EXAMPLES = 100  # examples per concept searched for their nearest impostor (a seeded sample beyond this)
SAME_EXAMPLE = 1 - 1e-6  # vectors at least this similar are one example (a duplicate), not neighbours
IMPOSTOR_K = 16  # neighbours searched for an example's nearest example of another concept
MIN_EVIDENCE = 5  # fewer similarities of a kind than this are too few to fit (treated as none)
DEFAULT_QUANTILE = 0.01  # verification's, when the open set is turned off


def check_quantile(quantile: float) -> float:
    """``quantile`` if it is a valid unknown quantile (0 turns open-set answers off)."""
    if isinstance(quantile, bool) or not isinstance(quantile, (int, float)) or not 0.0 <= quantile < 0.5:
        raise InvalidInputError(f"unknown quantile must be a number in [0, 0.5), got {quantile!r}")
    return float(quantile)


def genuine_similarities(vectors: np.ndarray, *, max_examples: int = LOO_MAX_EXAMPLES, seed: int = 0) -> np.ndarray:
    """Each example's similarity to the nearest *other* example of its concept; identical vectors (duplicates) are
    one example, counted once and never their own neighbour."""
    if len(vectors) < 2:
        return np.zeros(0, dtype=np.float64)
    if len(vectors) > max_examples:
        vectors = vectors[sample_rows(len(vectors), max_examples, seed)]
    gram = (vectors @ vectors.T).astype(np.float64)
    same = gram >= SAME_EXAMPLE
    first = ~np.tril(same, k=-1).any(axis=1)  # a duplicate of an earlier row is that example again: counted once
    gram[same] = -np.inf  # itself, and its duplicates
    best = gram[first].max(axis=1)
    return best[np.isfinite(best)]


def nearest_impostors(sims: np.ndarray, other: np.ndarray) -> np.ndarray:
    """From each example's search results (``sims`` descending, ``other[i, j]``: the j-th neighbour is an example
    of another concept), the similarity of its nearest example of another concept; where none is among the
    results, the least similar result's (it can be no more similar than that); ``-inf`` with no results."""
    usable = other & (sims < SAME_EXAMPLE) & np.isfinite(sims)
    found = sims[np.arange(len(sims)), usable.argmax(axis=1)].astype(np.float64)
    least = np.where(np.isfinite(sims), sims, np.inf).min(axis=1, initial=np.inf).astype(np.float64)
    return np.where(usable.any(axis=1), found, np.where(np.isfinite(least), least, -np.inf))


@dataclass(frozen=True)
class Calibration:
    """How a space's thresholds were set: its cuts and the evidence behind them."""

    threshold: float  # the space's open-set cut (-inf: none)
    verify_threshold: float  # the space's verification cut (-inf: none)
    method: str  # eer | genuine-only | impostors-only | none (and off for the open set at quantile 0)
    genuine: int  # genuine similarities used
    impostor: int  # impostor similarities used


@dataclass(frozen=True)
class Calibrated:
    """Per-concept thresholds: for open-set answers, and (never lower) for 1:1 verification."""

    open_set: dict[str, float]
    verify: dict[str, float]
    calibration: Calibration


def _pooled(parts: Mapping[str, np.ndarray]) -> np.ndarray:
    arrays = [np.asarray(a, dtype=np.float64) for a in parts.values() if len(a)]
    return np.concatenate(arrays) if arrays else np.zeros(0)


def _cuts(gen: np.ndarray, imp: np.ndarray, q: float, identity: bool) -> tuple[float, float, str]:
    """``(open-set cut, verification cut, method)`` of a space (the module's rule, step 1)."""
    enough_g, enough_i = len(gen) >= MIN_EVIDENCE, len(imp) >= MIN_EVIDENCE
    strict = float(imp.mean()) + NormalDist().inv_cdf(1 - q) * float(imp.std(ddof=1)) if enough_i else -np.inf
    if enough_g and enough_i:
        sd_g, sd_i = max(float(gen.std(ddof=1)), 1e-9), max(float(imp.std(ddof=1)), 1e-9)
        cut = (float(imp.mean()) * sd_g + float(gen.mean()) * sd_i) / (sd_g + sd_i)
        if identity:  # strangers are like the other enrolled identities: rejecting 1 - q of those is enough
            cut = min(cut, strict)
        return cut, cut, "eer"
    if enough_g:
        return np.inf, -np.inf, "genuine-only"
    if enough_i:
        return (strict if identity else float(np.quantile(imp, q))), strict, "impostors-only"
    return -np.inf, -np.inf, "none"


QuantileMemo = dict[str, tuple[np.ndarray, np.ndarray, dict[float, float]]]
"""Per concept: its genuine array, the same sorted (float64), and its quantiles computed so far."""


def _known(concept: str, values: np.ndarray, memo: QuantileMemo) -> tuple[np.ndarray, np.ndarray, dict[float, float]]:
    entry = memo.get(concept)
    if entry is None or entry[0] is not values:
        entry = memo[concept] = (values, np.sort(np.asarray(values, dtype=np.float64)), {})
    return entry


def _own_quantile(concept: str, values: np.ndarray, q: float, memo: QuantileMemo | None) -> float:
    if memo is None:
        return float(np.quantile(np.asarray(values, dtype=np.float64), q))
    _, ordered, known = _known(concept, values, memo)
    if q not in known:
        known[q] = float(np.quantile(ordered, q))  # the float64 copy kept for the pooled quantile: same values
    return known[q]


def _pooled_quantile(genuine: Mapping[str, np.ndarray], gen: np.ndarray, q: float, memo: QuantileMemo | None) -> float:
    """``np.quantile(gen, q)`` of the pooled genuine similarities ``gen``. With ``memo``, from each concept's
    lowest values only: the two values around rank ``q * (n - 1)`` of the pool are among each concept's first
    that many + 2, so at a low quantile a few hundred values per concept are gathered instead of partitioning
    every one (~0.5 ms at 20 concepts of 2,000 examples, on every prediction after a write)."""
    n = len(gen)
    if memo is None or n == 0:
        return float(np.quantile(gen, q))
    at = (n - 1) * q  # numpy's "linear" virtual index
    below = int(np.floor(at))
    low = np.concatenate([_known(c, v, memo)[1][: below + 2] for c, v in genuine.items() if len(v)])
    above = min(below + 1, n - 1)
    low.partition([below, above])
    a, b, t = low[below], low[above], at - below
    return float(b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t)  # numpy's _lerp


def calibrate(
    genuine: Mapping[str, np.ndarray],
    impostor: Mapping[str, np.ndarray],
    *,
    quantile: float,
    identity: bool = False,
    memo: QuantileMemo | None = None,
) -> Calibrated:
    """Per-concept thresholds (``-inf``: never unknown) from each concept's genuine and impostor similarities.

    ``identity``: the embedder was trained to separate identities (see the module's rule). ``memo``: per concept,
    its genuine array, sorted, and quantiles of it already computed (a caller keeping unchanged arrays between
    calls saves a quantile per concept and most of the pooled one's work per call). Verification uses
    the space's cut between genuine and impostor where it is higher than the open-set threshold (so a verified
    input is never "unknown"); at quantile 0 the open set is off and verification keeps the default quantile's.
    """
    q = check_quantile(quantile)
    concepts = sorted(set(genuine) | set(impostor))
    gen, imp = _pooled(genuine), _pooled(impostor)
    open_cut, verify_cut, method = _cuts(gen, imp, q or DEFAULT_QUANTILE, identity)
    open_set: dict[str, float] = {}
    pooled_q = _pooled_quantile(genuine, gen, q, memo) if q and method not in ("none", "impostors-only") else 0.0
    for c in concepts:
        own = np.asarray(genuine.get(c, ()), dtype=np.float64)
        if q == 0 or method == "none":
            open_set[c] = -np.inf
        elif method == "impostors-only":
            open_set[c] = open_cut
        else:
            prior = 1.0 / q
            keep = (
                (len(own) * _own_quantile(c, genuine[c], q, memo) + prior * pooled_q) / (len(own) + prior)
                if len(own)
                else pooled_q
            )
            open_set[c] = min(keep, open_cut)
    if q == 0:
        _, verify_cut, _ = _cuts(gen, imp, DEFAULT_QUANTILE, identity)
        base = calibrate(genuine, impostor, quantile=DEFAULT_QUANTILE, identity=identity).open_set
    else:
        base = open_set
    verify = {c: max(base[c], verify_cut) for c in concepts}
    space_cut = min(open_set.values(), default=-np.inf) if q else -np.inf
    return Calibrated(open_set, verify, Calibration(space_cut, verify_cut, method if q else "off", len(gen), len(imp)))


def evidence(
    vectors: np.ndarray, columns: np.ndarray, classes: list[str], search: Callable[[np.ndarray, int], Result]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Genuine and impostor similarities of single-label examples held in memory.

    ``columns[i]``: the class index of row ``i``; ``search(queries, k)``: ``(sims, rows)`` of the nearest rows,
    as a FAISS index over the same rows answers (a query's own row included).
    """
    genuine, impostor = {}, {}
    picked = []
    for c, name in enumerate(classes):
        members = np.flatnonzero(columns == c)
        genuine[name] = genuine_similarities(vectors[members])
        picked.append(members[sample_rows(len(members), IMPOSTOR_EXAMPLES, 1)])
    queries = np.concatenate(picked) if picked else np.zeros(0, np.int64)
    if len(queries) == 0 or len(classes) < 2:  # with one concept there are no impostors
        return genuine, {name: np.zeros(0) for name in classes}
    sims, rows = search(np.ascontiguousarray(vectors[queries]), min(IMPOSTOR_K, len(vectors)))
    known = rows >= 0
    other = known & (columns[np.where(known, rows, 0)] != columns[queries][:, None])
    nearest = nearest_impostors(sims, other)
    for c, name in enumerate(classes):
        found = nearest[columns[queries] == c]
        impostor[name] = found[np.isfinite(found)]
    return genuine, impostor
