"""Evaluation: leave-one-out for k-NN, stratified k-fold for the head; metrics, thresholds, plots.

Works on one label per example: examples with exactly one positive concept are evaluated,
others are counted in ``skipped``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from .classify import knn, openset
from .classify.head import fit_head
from .config import DEFAULT_C
from .errors import InvalidInputError
from .labels import LabelView


def roc_auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties averaged); None when only one class is present."""
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return None
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score), dtype=np.float64)
    sorted_scores = score[order]
    i = 0
    while i < len(score):
        j = i
        while j + 1 < len(score) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def pr_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(precision, recall, thresholds)`` at every distinct score, highest threshold first."""
    order = np.argsort(-score, kind="mergesort")
    s, t = score[order], y[order]
    tp = np.cumsum(t)
    fp = np.cumsum(~t)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    precision = tp[last] / (tp[last] + fp[last])
    recall = tp[last] / max(int(t.sum()), 1)
    return precision, recall, s[last]


def average_precision(y: np.ndarray, score: np.ndarray) -> float | None:
    """The area under the precision-recall steps (as scikit-learn's ``average_precision_score``); None without
    a positive."""
    if not np.any(y):
        return None
    precision, recall, _ = pr_curve(y, score)
    return _area(precision, recall)


def _area(precision: np.ndarray, recall: np.ndarray) -> float:
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def metrics(
    y_true: np.ndarray,
    scores: np.ndarray,
    classes: list[str],
    predicted: np.ndarray,
    suggested: dict[str, tuple[float, float] | None] | None = None,
) -> dict[str, Any]:
    """Accuracy, macro F1, per-concept precision/recall/F1/ROC-AUC/suggested threshold, confusion matrix.

    ``y_true``/``predicted`` are class indices (``predicted`` may be -1 for "unknown", the
    confusion matrix's last column); ``suggested``: see :func:`suggested_thresholds`.
    """
    k = len(classes)
    confusion = np.zeros((k, k + 1), dtype=np.int64)  # last column: answered unknown
    for t, p in zip(y_true, predicted):
        confusion[t, p if p >= 0 else k] += 1
    per: dict[str, Any] = {}
    f1s = []
    for c, name in enumerate(classes):
        tp = int(confusion[c, c])
        fp = int(confusion[:, c].sum() - tp)
        fn = int(confusion[c].sum() - tp)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        f1s.append(f1)
        truth = y_true == c
        cut = (suggested or {}).get(name)
        per[name] = {
            "support": int(truth.sum()),
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "roc_auc": None if (a := roc_auc(truth, scores[:, c])) is None else round(a, 4),
            "average_precision": None if (ap := average_precision(truth, scores[:, c])) is None else round(ap, 4),
            "suggested_threshold": None if cut is None else round(cut[0], 4),
            "f1_at_suggested": None if cut is None else round(cut[1], 4),
        }
    return {
        "accuracy": round(float(np.mean(predicted == y_true)), 4),
        "macro_f1": round(float(np.mean(f1s)), 4),
        "per_concept": per,
        "confusion": {"labels": [*classes, "unknown"], "matrix": confusion.tolist()},
    }


def _single_labels(X: np.ndarray, Y: np.ndarray, classes: list[str]) -> tuple[np.ndarray, np.ndarray, int]:
    one = (Y > 0).sum(axis=1) == 1
    return X[one], np.argmax(Y[one] > 0, axis=1), int((~one).sum())


def loo_knn(
    X: np.ndarray, y: np.ndarray, classes: list[str], *, k: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Leave-one-out k-NN: ``(scores, closed-set prediction, no positive vote)``; an example (and any duplicate
    of it) never votes for itself."""
    n = len(X)
    view = LabelView.single_label(y, classes)
    ids = view.ids
    index = faiss.IndexFlatIP(X.shape[1])
    index.add(np.ascontiguousarray(X, dtype=np.float32))
    sims, nn = index.search(np.ascontiguousarray(X, dtype=np.float32), min(k + 4, n))
    self_hit = (nn == ids[:, None]) | (sims >= openset.SAME_EXAMPLE)  # itself, or a duplicate of it
    sims = np.where(self_hit, -np.inf, sims)  # never votes
    nn = np.where(self_hit, -1, nn)
    votes = knn.vote(sims, nn, view, k=k, evidence=False)
    best = knn.rank(votes.scores, votes.support)[:, 0]
    return votes.scores, best, votes.scores[np.arange(n), best] <= 0


def nearest_of_predicted(X: np.ndarray, y: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Each example's similarity to the nearest *other* example of the concept it was predicted (leave-one-out,
    duplicates excluded): the score open-set thresholds are held against; ``-inf`` when there is none."""
    out = np.full(len(X), -np.inf)
    for c in np.unique(predicted[predicted >= 0]):
        rows, members = np.flatnonzero(predicted == c), np.flatnonzero(y == c)
        if len(members):
            sims = X[rows] @ X[members].T
            sims[sims >= openset.SAME_EXAMPLE] = -np.inf
            out[rows] = sims.max(axis=1)
    return out


def suggested_thresholds(
    similarity: np.ndarray, predicted: np.ndarray, y: np.ndarray, classes: list[str]
) -> dict[str, tuple[float, float] | None]:
    """Per concept, the similarity threshold whose accepted answers have the best F1 and that F1: answers of the
    concept below it would be "unknown" (``vecclf eval --apply`` adopts these). None where it is never answered."""
    out: dict[str, tuple[float, float] | None] = {}
    for c, name in enumerate(classes):
        mine = predicted == c
        if not mine.any():
            out[name] = None
            continue
        order = np.argsort(-similarity[mine], kind="mergesort")
        s, correct = similarity[mine][order], (y[mine] == c)[order]
        tp, fp = np.cumsum(correct), np.cumsum(~correct)
        f1 = 2 * tp / np.maximum(tp + fp + int((y == c).sum()), 1)
        last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # cut just below each distinct similarity
        best = last[int(np.argmax(f1[last]))]
        out[name] = (float(s[best]), float(f1[best])) if np.isfinite(s[best]) else None
    return out


def stratified_folds(y: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """A fold number per example, each class spread evenly over the folds."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    offset = 0
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        fold[members] = (np.arange(len(members)) + offset) % folds
        offset += len(members)
    return fold


def kfold_head(
    X: np.ndarray, y: np.ndarray, classes: list[str], *, folds: int = 5, C: float = DEFAULT_C, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold exclusive-head probabilities and predictions."""
    if folds < 2:
        raise InvalidInputError("folds must be at least 2")
    fold = stratified_folds(y, folds, seed)
    scores = np.zeros((len(X), len(classes)))
    for f in range(folds):
        test = fold == f
        if not test.any():
            continue
        present, target = np.unique(y[~test], return_inverse=True)  # a fold may lack a small class
        head = fit_head(X[~test], target, [classes[c] for c in present], mode="exclusive", C=C)
        scores[np.ix_(np.flatnonzero(test), present)] = head.predict_proba(X[test])
    return scores, np.argmax(scores, axis=1)


def evaluate_arrays(
    X: np.ndarray,
    Y: np.ndarray,
    classes: list[str],
    *,
    method: str = "knn",
    k: int = 10,
    folds: int = 5,
    unknown_quantile: float = 0.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate on training arrays (``Y`` as from :meth:`ConceptClassifier.training_data`)."""
    Xs, y, skipped = _single_labels(X, Y, classes)
    present = sorted(set(y.tolist()))
    if len(present) < 2 or len(Xs) < 3:
        raise InvalidInputError("evaluation needs at least two concepts and three single-label examples")
    rejected = np.zeros(len(Xs), dtype=bool)
    if method == "knn":
        scores, predicted, rejected = loo_knn(Xs, y, classes, k=k)
        protocol = f"leave-one-out, k={k}"
    elif method == "head":
        scores, predicted = kfold_head(Xs, y, classes, folds=folds, seed=seed)
        protocol = f"stratified {folds}-fold"
    else:
        raise InvalidInputError(f"evaluation method must be knn or head, got {method!r}")
    similarity = nearest_of_predicted(Xs, y, predicted)
    out = metrics(y, scores, classes, predicted, suggested_thresholds(similarity, predicted, y, classes))
    # The metrics above are closed-set; this is how often in-scope examples would be answered "unknown" under the
    # open-set thresholds learned from all of them (the held-out one included: a close, slightly low estimate).
    if unknown_quantile > 0:
        Xf = np.ascontiguousarray(Xs, dtype=np.float32)
        index = faiss.IndexFlatIP(Xf.shape[1])
        index.add(Xf)
        evidence = openset.evidence(Xf, y, classes, index.search)
        thresholds = openset.calibrate(*evidence, quantile=unknown_quantile).open_set
        limits = np.array([thresholds.get(classes[p], -np.inf) for p in predicted])
        rejected |= similarity < limits
    out["unknown_rate"] = round(float(rejected.mean()), 4)
    out["unknown_quantile"] = unknown_quantile
    return {
        "method": method,
        "protocol": protocol,
        "examples": len(Xs),
        "skipped": skipped,
        **out,
        "_scores": scores,
        "_truth": y,
    }


REPORT_FILE = "evaluation.json"


def write_report(report: dict[str, Any], out_dir: Path) -> dict[str, str]:
    """Write ``evaluation.json``, ``confusion.png`` and ``pr_curves.png``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    public = {k: v for k, v in report.items() if not k.startswith("_")}
    paths = {
        "json": out_dir / REPORT_FILE,
        "confusion": out_dir / "confusion.png",
        "pr": out_dir / "pr_curves.png",
    }
    paths["json"].write_text(json.dumps(public, indent=2))
    labels = report["confusion"]["labels"]
    matrix = np.array(report["confusion"]["matrix"])
    size = min(2 + 0.35 * len(labels), 30)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels) - 1), labels[:-1], fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(labels) <= 25:
        for (r, c), v in np.ndenumerate(matrix):
            if v:
                ax.text(c, r, str(v), ha="center", va="center", fontsize=7)
    ax.set_title(f"{report['method']} ({report['protocol']}): accuracy {report['accuracy']:.3f}")
    fig.tight_layout()
    fig.savefig(paths["confusion"], dpi=110)
    plt.close(fig)
    _pr_figure(plt, report, labels[:-1], paths["pr"])
    return {k: str(v) for k, v in paths.items()}


PR_ONE_PANEL = 8
"""Up to this many concepts share one precision-recall panel (a legend with each one's AP); more get a panel each."""
PR_PANELS = 64
"""At most this many panels: the concepts with the lowest average precision, where the problems are."""


def _pr_figure(plt: Any, report: dict[str, Any], classes: list[str], path: Path) -> None:
    curves = []
    for c, name in enumerate(classes):
        truth = report["_truth"] == c
        if truth.any():
            p, r, _ = pr_curve(truth, report["_scores"][:, c])
            curves.append((_area(p, r), name, r, p))  # the curve is at hand: not computed again for its AP
    title = f"precision-recall per concept ({report['method']}, {report['protocol']})"
    if len(curves) <= PR_ONE_PANEL:
        fig, ax = plt.subplots(figsize=(7, 6))
        for ap, name, r, p in curves:
            ax.step(r, p, where="post", label=f"{name} (AP {ap:.3f})", linewidth=1.2)
        _pr_axes(ax)
        ax.set_title(title)
        if curves:
            ax.legend(fontsize=8, loc="lower left")
    else:
        shown = sorted(curves, key=lambda c: c[0])[:PR_PANELS]
        cols = int(np.ceil(np.sqrt(len(shown))))
        rows = int(np.ceil(len(shown) / cols))
        fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.0 * rows), sharex=True, sharey=True, squeeze=False)
        for ax, (ap, name, r, p) in zip(axes.flat, shown):
            ax.step(r, p, where="post", linewidth=1.2)
            ax.set_title(f"{name[:24]}  AP {ap:.3f}", fontsize=8)
            _pr_axes(ax, small=True)
        for ax in list(axes.flat)[len(shown) :]:
            ax.axis("off")
        more = f"; the {len(shown)} lowest AP of {len(curves)}" if len(shown) < len(curves) else ""
        fig.suptitle(f"{title}, lowest average precision first{more}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pr_axes(ax: Any, small: bool = False) -> None:
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.tick_params(labelsize=6 if small else 9)
    if not small:
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")


def held_out(
    truth: list[str], answers: list[tuple[str, dict[str, float]]], classes: list[str], *, method: str
) -> dict[str, Any]:
    """Metrics of predictions on a labelled test set: ``answers`` are ``(concept or "unknown", scores)``.

    A test label that is no stored concept is out of scope: its right answer is "unknown". ``accuracy`` counts
    both kinds; per-concept figures, macro F1 and the confusion matrix are over the in-scope items.
    """
    col = {c: j for j, c in enumerate(classes)}
    inside = np.array([t in col for t in truth], dtype=bool)
    answered = [a for a, _ in answers]
    right = np.array([a == t if t in col else a == "unknown" for t, a in zip(truth, answered)], dtype=bool)
    y = np.array([col[t] for t, i in zip(truth, inside) if i], dtype=np.int64)
    predicted = np.array([col.get(a, -1) for a, i in zip(answered, inside) if i], dtype=np.int64)
    scores = np.zeros((len(y), len(classes)))
    for row, (_, s) in enumerate(a for a, i in zip(answers, inside) if i):
        for name, value in s.items():
            if name in col:
                scores[row, col[name]] = value
    if len(y) == 0:
        raise InvalidInputError("no test item is labelled with a stored concept")
    out = metrics(y, scores, classes, predicted)
    out["accuracy"] = round(float(right.mean()), 4)
    out["in_scope_accuracy"] = round(float(np.mean(predicted == y)), 4)
    out["unknown_rate"] = round(float(np.mean(predicted < 0)), 4)
    outside = ~inside
    out["out_of_scope"] = int(outside.sum())
    out["unknown_recall"] = round(float(right[outside].mean()), 4) if outside.any() else None
    return {
        "method": method,
        "protocol": "held-out test set",
        "examples": len(truth),
        "skipped": 0,
        **out,
        "_scores": scores,
        "_truth": y,
    }
