"""Head training time and accuracy vs scikit-learn's LogisticRegression (lbfgs) on the same embeddings.

Cases: seeded clusters at 20 concepts (50k x 256) and 150 concepts (20k x 384), and BANKING77 embedded with the
offline text tower (10k x 384, 77 intents; skipped when the shared data is absent) with a retrain after one
intent is added (warm start from the previous head). Each case runs ours and scikit-learn's in turn for
``--rounds`` rounds, once with one BLAS thread per side and once with the default threads on both sides, and
reports medians with min-max, iterations, each side's objective value (the same one: scikit-learn's, divided by
``C * n``) and test accuracy. Then ``vecclf train`` timed in a fresh process on a small and a large store.

    python benchmarks/bench_head.py            # a few minutes on 2 cores
    python benchmarks/bench_head.py --smoke    # tiny sizes, proves the script runs
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _data import banking77, emit, interleaved, load_average, spread, synthetic
from threadpoolctl import threadpool_limits

from vecclf.classify.head import HeadWeights, fit_head
from vecclf.classify.lbfgs import NumpyObjective
from vecclf.store import NewInput, Store


def objective(X: np.ndarray, y: np.ndarray, sw: np.ndarray, C: float, coef: np.ndarray, b: np.ndarray) -> float:
    """The shared objective at ``(coef, b)``: mean weighted log loss + ||W||^2 / (2 C n)."""
    f = NumpyObjective("exclusive", X, y, sw, 1.0 / (2 * C * len(X)), threads=None)
    with f:
        return f(np.concatenate([coef, b[:, None]], axis=1).astype(np.float64).ravel())[0]


def case(
    name: str,
    X: np.ndarray,
    y: np.ndarray,
    Xte: np.ndarray,
    yte: np.ndarray,
    *,
    C: float,
    balanced: bool,
    rounds: int,
    warm: HeadWeights | None = None,
) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    k = int(y.max()) + 1
    names = [f"c{i:03d}" for i in range(k)]
    cw = "balanced" if balanced else None
    out: dict[str, Any] = {"case": name, "shape": list(X.shape), "concepts": k, "C": C, "class_weight": cw}
    fitted: dict[str, Any] = {}

    def ours(threads: int | None) -> None:
        fitted["ours"] = fit_head(X, y, names, C=C, class_weight=cw, threads=threads, warm_start=warm)

    def sklearn() -> None:
        fitted["sklearn"] = LogisticRegression(C=C, max_iter=100, class_weight=cw).fit(X, y)

    for label, threads in (("one_thread", 1), ("default_threads", None)):
        with threadpool_limits(limits=threads):
            times = interleaved({"ours": lambda t=threads: ours(t), "sklearn": sklearn}, rounds)
        out[label] = {
            "load_average_at_start": load_average(),
            "ours": spread(times["ours"]),
            "sklearn": spread(times["sklearn"]),
            "time_ratio_ours_over_sklearn (medians)": round(
                float(np.median(times["ours"]) / np.median(times["sklearn"])), 3
            ),
        }
    head, sk = fitted["ours"], fitted["sklearn"]
    counts = np.bincount(y, minlength=k)
    sw = (len(y) / (k * counts))[y].astype(np.float32) if balanced else np.ones(len(y), np.float32)
    f_ours = objective(X, y, sw, C, head.coef, head.intercept)
    f_sk = objective(X, y, sw, C, sk.coef_, sk.intercept_)
    out["ours"] = {
        "iterations": head.n_iter,
        "objective": round(f_ours, 5),
        "accuracy": round(float(np.mean(np.argmax(head.decision_function(Xte), 1) == yte)), 4),
    }
    out["sklearn"] = {
        "iterations": int(sk.n_iter_[0]),
        "objective": round(f_sk, 5),
        "accuracy": round(float(np.mean(sk.predict(Xte) == yte)), 4),
    }
    out["objective_gap_relative"] = round((f_ours - f_sk) / abs(f_sk), 5)
    out["accuracy_diff_pts"] = round(100 * (out["ours"]["accuracy"] - out["sklearn"]["accuracy"]), 2)
    return out


def fresh_train(store: Path, rounds: int) -> dict[str, Any]:
    """Wall time of ``vecclf train`` in a fresh process (interpreter start and imports included)."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "vecclf.cli", "train", "--store", str(store), "--json"],
            capture_output=True,
            text=True,
            env={**os.environ, "VECCLF_STORE": str(store)},
        )
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise RuntimeError(done.stderr)
    return spread(times)


def store_of(path: Path, X: np.ndarray, y: np.ndarray) -> Path:
    store = Store.create(path, spec={"kind": "bench"}, identity={"kind": "bench"}, spaces={"joint": X.shape[1]})
    store.add([NewInput("text", "joint", f"t{i}", X[i], concepts=(f"c{y[i]:03d}",)) for i in range(len(X))])
    store.close()
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    rounds = 1 if args.smoke else args.rounds
    cases = []
    for m, d, k in ((50_000, 256, 20), (20_000, 384, 150)):
        if args.smoke:
            m, k = 3000, min(k, 30)
        X, y = synthetic(m + m // 10, d, k, seed=0)
        cases.append(case(f"clusters {k}", X[:m], y[:m], X[m:], y[m:], C=1.0, balanced=False, rounds=rounds))
    data = None if args.smoke else banking77()
    if data is not None:
        classes, ytr = np.unique(data["ytr"], return_inverse=True)
        yte = np.searchsorted(classes, data["yte"])
        Xtr, Xte = data["Xtr"], data["Xte"]
        cases.append(case("banking77", Xtr, ytr, Xte, yte, C=10.0, balanced=True, rounds=rounds))
        last = len(classes) - 1  # the retrain a user runs after adding one intent
        before = fit_head(Xtr[ytr < last], ytr[ytr < last], [f"c{i:03d}" for i in range(last)], C=10.0)
        cases.append(
            case(
                "banking77, retrain after one new intent",
                Xtr,
                ytr,
                Xte,
                yte,
                C=10.0,
                balanced=True,
                rounds=rounds,
                warm=before,
            )
        )
    tmp = Path(tempfile.mkdtemp(prefix="vecclf-head-"))
    try:
        Xs, ys = synthetic(33, 384, 3, seed=1)
        Xl, yl = synthetic(600 if args.smoke else 15_000, 384, 30 if args.smoke else 150, seed=2)
        train = {
            "small store (30 examples, 3 concepts)": fresh_train(store_of(tmp / "small", Xs[:30], ys[:30]), rounds),
            f"large store ({len(Xl)} examples x 384, {yl.max() + 1} concepts)": fresh_train(
                store_of(tmp / "large", Xl, yl), rounds
            ),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    emit({"benchmark": "head_fit", "rounds": rounds, "cases": cases, "vecclf_train_fresh_process": train})


if __name__ == "__main__":
    main()
