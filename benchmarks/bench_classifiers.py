"""Our k-NN and head vs scikit-learn on the same offline embeddings of BANKING77 and CIFAR-10.

Few-shot (1, 5, 10 per class) and full training sets; accuracy and fit/predict time side by side;
open-set rejection with BANKING77 intents held out as "unknown".

    python benchmarks/bench_classifiers.py [--smoke]
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from _data import banking77, cifar10, emit, timed

from vecclf.classify.estimators import KNNClassifier, LogisticHead
from vecclf.labels import UNKNOWN


def few_shot(y: np.ndarray, shots: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.permutation(np.flatnonzero(y == c))[:shots] for c in np.unique(y)])


def compare(
    Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, yte: np.ndarray, k: int = 10, C: float = 10.0
) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    def acc(pred: np.ndarray) -> float:
        return round(float(np.mean(pred.astype(str) == yte.astype(str))), 4)

    kk = min(k, len(Xtr))
    out: dict[str, Any] = {"train": len(Xtr), "test": len(Xte)}
    t_fit, ours = timed(lambda: KNNClassifier(k=kk).fit(Xtr, ytr), 1)
    t_pred, pred = timed(lambda: ours.predict(Xte), 3)
    sk = KNeighborsClassifier(n_neighbors=kk, metric="cosine", weights="distance", algorithm="brute")
    t_fit_sk, _ = timed(lambda: sk.fit(Xtr, ytr), 1)
    t_pred_sk, pred_sk = timed(lambda: sk.predict(Xte), 3)
    out["knn"] = {
        "ours_acc": acc(pred),
        "sklearn_acc": acc(pred_sk),
        "ours_predict_s": round(t_pred, 4),
        "sklearn_predict_s": round(t_pred_sk, 4),
        "predict_speedup": round(t_pred_sk / t_pred, 2),
        "ours_fit_s": round(t_fit, 4),
        "sklearn_fit_s": round(t_fit_sk, 4),
    }
    t_head, head = timed(lambda: LogisticHead(C=C).fit(Xtr, ytr), 3)
    t_lr, lr = timed(lambda: LogisticRegression(C=C, max_iter=1000).fit(Xtr, ytr), 3)
    out["head"] = {
        "ours_acc": acc(head.predict(Xte)),
        "sklearn_acc": acc(lr.predict(Xte)),
        "ours_fit_s": round(t_head, 4),
        "sklearn_fit_s": round(t_lr, 4),
        "fit_time_ratio": round(t_head / t_lr, 3),
    }
    return out


def open_set(d: dict[str, np.ndarray], held_out: int = 10, seed: int = 0) -> dict[str, Any]:
    """Train on the other intents; unknown recall = held-out test items answered "unknown"."""
    rng = np.random.default_rng(seed)
    intents = np.unique(d["ytr"])
    unknown = set(rng.choice(intents, size=min(held_out, len(intents) // 2), replace=False).tolist())
    keep = np.array([y not in unknown for y in d["ytr"]])
    inside = np.array([y not in unknown for y in d["yte"]])
    rows = []
    for q in (0.0, 0.01, 0.05, 0.1, 0.2):
        model = KNNClassifier(k=10, unknown_quantile=q).fit(d["Xtr"][keep], d["ytr"][keep])
        pred = model.predict_open(d["Xte"])
        rows.append(
            {
                "unknown_quantile": q,
                "in_scope_accuracy": round(float(np.mean(pred[inside] == d["yte"][inside])), 4),
                "in_scope_rejected": round(float(np.mean(pred[inside] == UNKNOWN)), 4),
                "unknown_recall": round(float(np.mean(pred[~inside] == UNKNOWN)), 4),
            }
        )
    return {"held_out_intents": sorted(unknown), "results": rows}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    result: dict[str, Any] = {"benchmark": "classifiers", "datasets": {}}
    warm_X = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    LogisticHead().fit(warm_X, np.arange(64) % 2)  # pay torch's one-time start-up before timing anything
    sets = {"banking77": banking77(smoke=args.smoke), "cifar10": cifar10(smoke=args.smoke)}
    for name, d in sets.items():
        if d is None:
            result["datasets"][name] = "skipped: ../shared/data not found"
            continue
        rows = {}
        for shots in (1, 5, 10):
            idx = few_shot(d["ytr"], shots, seed=shots)
            rows[f"{shots}-shot"] = compare(d["Xtr"][idx], d["ytr"][idx], d["Xte"], d["yte"])
        rows["full"] = compare(d["Xtr"], d["ytr"], d["Xte"], d["yte"])
        result["datasets"][name] = rows
    if sets["banking77"] is not None:
        result["open_set_banking77"] = open_set(sets["banking77"])
    emit(result)


if __name__ == "__main__":
    main()
