"""A new concept in a large store: adding 10 examples and predicting with them, without rebuilds or retraining.

Builds a store of N seeded, clustered 512-d vectors in 20 concepts (default 1,000,000), then nine times: add 10
examples of a brand-new concept (vectors given: no embedding) and predict a query near them with k-NN. Beside it,
the same add + search on a raw FAISS flat index (the floor: no catalogue, no labels).

    python benchmarks/bench_scale.py [--smoke] [--n 1000000]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from _data import emit
from bench_knn import build_store, clustered

from vecclf.classifier import ConceptClassifier
from vecclf.store import NewInput, Store
from vecclf.store.index import recall_at

ROUNDS = 9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--n", type=int, default=1_000_000)
    args = ap.parse_args()
    n, d = (20_000, 64) if args.smoke else (args.n, 512)
    X, y = clustered(n, d, 20)
    rng = np.random.default_rng(7)
    result: dict[str, Any] = {"benchmark": "scale", "n": n, "d": d}
    tmp = Path(tempfile.mkdtemp(prefix="vecclf-scale-"))
    try:
        start = time.perf_counter()
        store = build_store(tmp / "store", X, y)
        result["build_s"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        store.close()
        result["close_s (index saved)"] = round(time.perf_counter() - start, 1)
        disk = sum(f.stat().st_size for f in (tmp / "store").iterdir())
        result["disk_bytes_per_vector"] = round(disk / n)
        start = time.perf_counter()
        clf = ConceptClassifier(Store.open(tmp / "store"))
        clf.predict_vectors("joint", X[:1], method="knn")
        result["open_and_first_predict_s"] = round(time.perf_counter() - start, 2)

        flat = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
        flat.add_with_ids(X, np.arange(1, n + 1, dtype=np.int64))
        add_ms, predict_ms, floor_ms, right, unknown, recall = [], [], [], 0, 0, []
        rounds = []
        for round_ in range(ROUNDS):  # ours first, then the raw floor: FAISS's spinning threads would slow ours
            centre = rng.normal(size=d).astype(np.float32)
            new = centre + rng.normal(size=(11, d)).astype(np.float32) * 0.3
            new /= np.linalg.norm(new, axis=1, keepdims=True)
            name = f"new_concept_{round_}"
            t0 = time.perf_counter()
            ids = clf.store.add([NewInput("text", "joint", f"{name}-{i}", new[i], concepts=(name,)) for i in range(10)])
            t1 = time.perf_counter()
            (pred,) = clf.predict_vectors("joint", new[10:], method="knn")
            t2 = time.perf_counter()
            add_ms.append((t1 - t0) * 1e3)
            predict_ms.append((t2 - t1) * 1e3)
            right += pred.nearest == name
            unknown += pred.concept == "unknown"
            rounds.append((new, ids, [nb["id"] for nb in pred.neighbours]))
        for new, ids, neighbours in rounds:
            t0 = time.perf_counter()
            flat.add_with_ids(new[:10], np.array(ids, dtype=np.int64))
            _, exact = flat.search(new[10:], 10)
            floor_ms.append((time.perf_counter() - t0) * 1e3)
            recall.append(recall_at(exact, np.array([neighbours])))
        result["new_concept"] = {
            "add_10_ms": round(statistics.median(add_ms), 2),
            "predict_ms": round(statistics.median(predict_ms), 2),
            "total_ms": round(statistics.median(np.add(add_ms, predict_ms).tolist()), 2),
            "raw_faiss_add_and_search_ms": round(statistics.median(floor_ms), 2),
            "add_10_ms_each_round": [round(x, 1) for x in add_ms],
            "best_concept_is_the_new_one": f"{right}/{ROUNDS}",
            "answered_unknown (below the new concept's open-set threshold)": f"{unknown}/{ROUNDS}",
            "neighbours_recall_at_10 (vs exact)": round(float(np.mean(recall)), 3),
            "index": clf.store.info()["spaces"]["joint"].get("index"),
        }
        clf.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    emit(result)


if __name__ == "__main__":
    main()
