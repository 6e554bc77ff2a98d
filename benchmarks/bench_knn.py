"""k-NN prediction speed: our estimator and our store beside raw FAISS, scikit-learn and the memory floor.

A seeded, clustered set of N unit vectors (default 200,000 x 512, 20 concepts). Batch: 1,000 queries, k=10.
Single query: median latency against the time to stream the N*d*4 bytes once (the bandwidth floor for exact
search), measured with numpy on the same array.

    python benchmarks/bench_knn.py [--smoke] [--n 200000]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import vecclf  # noqa: F401  (first: it sets the OpenMP wait policy, read when faiss loads)

# isort: split
import faiss
import numpy as np
from _data import emit, interleaved, load_average, spread, timed

from vecclf.classifier import ConceptClassifier
from vecclf.classify.estimators import KNNClassifier
from vecclf.store import NewInput, Store
from vecclf.store.index import faster_batch_search

ROUNDS = 7
SINGLE_ROUNDS = 25


def clustered(n: int, d: int, concepts: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around ``concepts`` centres with sub-clusters: some structure, like real embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(concepts * 8, d)).astype(np.float32)
    sub = rng.integers(0, concepts * 8, n)
    X = centres[sub] + rng.normal(size=(n, d)).astype(np.float32) * 1.5
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X, sub % concepts


def build_store(path: Path, X: np.ndarray, y: np.ndarray) -> Store:
    store = Store.create(path, spec={"kind": "bench"}, identity={"kind": "bench"}, spaces={"joint": X.shape[1]})
    for start in range(0, len(X), 20_000):
        rows = [
            NewInput("text", "joint", f"h{i}", X[i], concepts=(f"c{y[i]}",))
            for i in range(start, min(start + 20_000, len(X)))
        ]
        store.add(rows)
    return store


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--n", type=int, default=200_000)
    args = ap.parse_args()
    n, d, nq, k = (5_000, 64, 50, 10) if args.smoke else (args.n, 512, 1_000, 10)
    data, labels_all = clustered(n + nq, d, 20)
    X, y, Q = data[:n], labels_all[:n], data[n:]  # queries from the same distribution, not stored
    labels = np.array([f"c{v}" for v in y])
    result: dict[str, Any] = {"benchmark": "knn", "n": n, "d": d, "queries": nq, "k": k}

    flat = faiss.IndexFlatIP(d)
    flat.add(X)
    ours = KNNClassifier(k=k).fit(X, labels)
    from sklearn.neighbors import KNeighborsClassifier

    sk = KNeighborsClassifier(n_neighbors=k, metric="cosine", weights="distance", algorithm="brute").fit(X, labels)
    t_sk, pred_sk = timed(lambda: sk.predict(Q), 3)
    ivf = KNNClassifier(k=k, index="ivf").fit(X, labels)  # what `auto` becomes past its threshold
    t_ivf, pred_ivf = timed(lambda: ivf.predict(Q), 5)
    pred = ours.predict(Q)

    tmp = Path(tempfile.mkdtemp(prefix="vecclf-bench-"))
    try:
        start = time.perf_counter()
        store = build_store(tmp / "store", X, y)
        t_build = time.perf_counter() - start
        clf = ConceptClassifier(store, unknown_quantile=0.0)
        clf.warm(background=False)  # label view, index: loaded once, then held
        preds = clf.predict_vectors("joint", Q, method="knn", k=k)
        agree = float(np.mean([p.nearest == c for p, c in zip(preds, pred)]))
        load = load_average()
        times = interleaved(
            {
                "raw_faiss": lambda: flat.search(Q, k),
                "estimator": lambda: ours.predict(Q),
                "store": lambda: clf.predict_vectors("joint", Q, method="knn", k=k),
            },
            ROUNDS,
        )
        med = {name: statistics.median(t) for name, t in times.items()}
        result["batch"] = {
            "load_average_at_start": load,
            "rounds (interleaved)": ROUNDS,
            "seconds": {name: spread(t) for name, t in times.items()},
            "raw_faiss_qps": round(nq / med["raw_faiss"]),
            "ours_estimator_qps": round(nq / med["estimator"]),
            "ours_store_qps": round(nq / med["store"]),
            "sklearn_brute_qps": round(nq / t_sk),
            "estimator_vs_faiss (median speed ratio)": round(med["raw_faiss"] / med["estimator"], 3),
            "store_vs_faiss (median speed ratio)": round(med["raw_faiss"] / med["store"], 3),
            "estimator_vs_sklearn": round(t_sk / med["estimator"], 2),
            "store_vs_sklearn": round(t_sk / med["store"], 2),
            "agreement_with_sklearn": round(float(np.mean(pred == pred_sk)), 4),
            "ours_ivf_estimator_qps": round(nq / t_ivf),
            "ivf_vs_sklearn": round(t_sk / t_ivf, 2),
            "ivf_agrees_with_exact": round(float(np.mean(pred_ivf == pred)), 4),
            "store_agrees_with_estimator": round(agree, 4),
            "store_build_s": round(t_build, 1),
            # the store's flat batch search: FAISS's or its own, whichever was faster on the first batch
            "store_batch_search": faster_batch_search(),
        }
        q1 = Q[:1]
        vec = np.ones(X.shape[1], dtype=np.float32)
        load = load_average()
        one = interleaved(
            {
                "floor_sum": lambda: float(X.sum()),
                "floor_matvec": lambda: X @ vec,
                "raw_faiss": lambda: flat.search(q1, k),
                "estimator": lambda: ours.predict(q1),
                "store": lambda: clf.predict_vectors("joint", q1, method="knn", k=k),
            },
            SINGLE_ROUNDS,
        )
        m1 = {name: statistics.median(t) for name, t in one.items()}

        def ms(t: list[float]) -> dict[str, float]:
            return {
                key: round(v * 1e3, 3)
                for key, v in (("median", statistics.median(t)), ("min", min(t)), ("max", max(t)))
            }

        floor = min(m1["floor_sum"], m1["floor_matvec"])
        result["single_query"] = {
            "load_average_at_start": load,
            "rounds (interleaved)": SINGLE_ROUNDS,
            "ms": {name: ms(t) for name, t in one.items()},
            "bandwidth_floor_ms (median of the faster pass over X)": round(floor * 1e3, 3),
            "gb_per_s": round(X.nbytes / floor / 1e9, 2),
            "raw_faiss_vs_floor": round(m1["raw_faiss"] / floor, 2),
            "estimator_vs_floor": round(m1["estimator"] / floor, 2),
            "store_vs_floor": round(m1["store"] / floor, 2),
        }
        store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    emit(result)


if __name__ == "__main__":
    main()
