"""Training data from a store, and heads trained from it and saved back (one per space)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..config import DEFAULT_C, MODES
from ..errors import InvalidInputError
from ..store import Store
from .head import HeadWeights, fit_head


def training_data(store: Store, space: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(X, Y, classes)`` for ``space``: one row per labelled example (a video by its pooled vector).

    ``Y[i, c]`` is +1 for a positive, -1 for an explicit negative *or* a positive of another
    concept only, 0 when unknown. Classes are sorted by name.
    """
    with store.reading():
        view = store.label_view(space)
        ids, X = store.vectors(space, view.label_roots.tolist())
    pos = np.searchsorted(view.label_roots, ids)
    order = np.argsort(np.array(view.classes, dtype=object), kind="stable")  # heads list concepts sorted
    M = view.matrix[pos][:, order]
    has_pos = (M > 0).any(axis=1, keepdims=True)
    Y = np.where(M != 0, M, np.where(has_pos, -1, 0)).astype(np.int8)
    return X, Y, [view.classes[j] for j in order]


def choose_mode(mode: str, Y: np.ndarray, n_classes: int, any_negative: bool) -> str:
    """``mode`` itself, or for ``auto``: exclusive when each example of the space has exactly one concept and none
    of them is an explicit negative (decided per space: negatives elsewhere do not count)."""
    if mode not in MODES:
        raise InvalidInputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode != "auto":
        return mode
    single = bool(np.all((Y > 0).sum(axis=1) == 1))
    return "exclusive" if single and not any_negative and n_classes > 1 else "multilabel"


def train_heads(
    store: Store,
    *,
    mode: str = "auto",
    space: str | None = None,
    C: float = DEFAULT_C,
    device: str | None = None,
) -> dict[str, tuple[int, HeadWeights, dict[str, Any]]]:
    """Train and save a logistic head per space that has labelled examples.

    Returns ``{space: (generation trained at, head, summary)}``.
    """
    if mode not in MODES:
        raise InvalidInputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    out: dict[str, tuple[int, HeadWeights, dict[str, Any]]] = {}
    for sp in [space] if space else list(store.spaces):
        gen = store.generation(sp)
        X, Y, classes = training_data(store, sp)
        if len(classes) == 0:
            continue
        negatives = bool((store.label_view(sp).matrix < 0).any())
        chosen = choose_mode(mode, Y, len(classes), negatives)
        started = time.perf_counter()
        previous = _previous_head(store, sp, chosen, C)
        if chosen == "exclusive":
            if not np.all((Y > 0).sum(axis=1) == 1):
                raise InvalidInputError("exclusive mode needs exactly one positive concept per example; use multilabel")
            target = np.argmax(Y > 0, axis=1)
            head = fit_head(X, target, classes, mode="exclusive", C=C, device=device, warm_start=previous)
        else:
            head = fit_head(X, Y, classes, mode="multilabel", C=C, device=device, warm_start=previous)
        seconds = time.perf_counter() - started
        meta, arrays = head.to_state()
        store.save_head(sp, gen, meta, arrays)
        summary = {
            "mode": chosen,
            "classes": classes,
            "examples": len(X),
            "iterations": head.n_iter,
            "seconds": round(seconds, 3),
        }
        out[sp] = (gen, head, summary)
    if not out:
        raise InvalidInputError("nothing to train on: add labelled examples first")
    return out


def _previous_head(store: Store, space: str, mode: str, C: float) -> HeadWeights | None:
    """The stored head of ``space`` when it can seed this fit (same mode and ``C``), else None."""
    found = store.load_head(space)
    if found is None:
        return None
    try:
        head = HeadWeights.from_state(found[1], found[2])
    except (InvalidInputError, KeyError, ValueError):
        return None  # an unreadable old head only costs the warm start
    return head if head.mode == mode and head.C == C else None
