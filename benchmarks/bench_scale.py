"""A new concept in a large store: adding 10 examples and predicting with them, without rebuilds or retraining.

Builds a store of N seeded, clustered 512-d vectors in 20 concepts (default 1,000,000), opens it again and warms it
(as `vecclf serve` does at start), then eleven rounds: add 10 examples of a brand-new concept (vectors given: no
embedding) and predict a query near them with k-NN, and in the same round the same add + search on a raw FAISS
flat index (the floor: no catalogue, no labels). The first round after opening is reported on its own; the
others as median and min-max.

    python benchmarks/bench_scale.py [--smoke] [--n 1000000]
"""

from __future__ import annotations

import argparse
import functools
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
from _data import emit, load_average
from bench_knn import build_store, clustered

from vecclf.classifier import ConceptClassifier
from vecclf.classify.predictor import Predictor
from vecclf.classify.thresholds import StoreThresholds
from vecclf.store import NewInput, Store
from vecclf.store.catalogue import Catalogue
from vecclf.store.index import recall_at
from vecclf.store.vectors import SpaceIndex

ROUNDS = 11
# The steps of an add and of the prediction after it, timed by wrapping the methods that do them (what is not
# in a step — the transaction's BEGIN and COMMIT, the checks and the in-memory bookkeeping — is "rest").
STEPS = {
    "add": {
        "duplicate check (hash filter, 2 IVF cells)": (Store, "_duplicates"),
        "concept row": (Catalogue, "concept_ids"),
        "input and label rows": (Catalogue, "insert"),
        "vector rows": (Catalogue, "insert_vectors"),
        "generation": (Catalogue, "bump"),
        "FAISS add": (SpaceIndex, "add"),
    },
    "predict": {
        "thresholds (new concept's evidence)": (StoreThresholds, "get"),
        "search and vote": (Predictor, "_vote"),
    },
}


class StepTimer:
    """Milliseconds spent in each of :data:`STEPS` since the last :meth:`take` (nested calls counted once)."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}
        for steps in STEPS.values():
            for name, (cls, method) in steps.items():
                setattr(cls, method, self._timed(name, getattr(cls, method)))

    def _timed(self, name: str, fn: Any) -> Any:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent[name] = self.spent.get(name, 0.0) + (time.perf_counter() - start) * 1e3

        return timed

    def take(self) -> dict[str, float]:
        spent, self.spent = self.spent, {}
        if "input and label rows" in spent:  # the concept row is made inside that step: counted once
            spent["input and label rows"] -= spent.get("concept row", 0.0)
        return spent


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
        result["open_s"] = round(time.perf_counter() - start, 3)
        start = time.perf_counter()
        clf.warm(background=False)  # what `vecclf serve` does in the background as it starts
        result["warm_at_open_s (off the request path)"] = round(time.perf_counter() - start, 2)

        flat = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
        flat.add_with_ids(X, np.arange(1, n + 1, dtype=np.int64))
        add_ms, predict_ms, floor_ms, right, unknown, recall = [], [], [], 0, 0, []
        timer, steps = StepTimer(), []
        result["load_average_at_start"] = load_average()
        for round_ in range(ROUNDS):  # ours, then the raw floor, in turn: a change in load falls on both
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
            steps.append(timer.take())
            right += pred.nearest == name
            unknown += pred.concept == "unknown"
            t0 = time.perf_counter()
            flat.add_with_ids(new[:10], np.array(ids, dtype=np.int64))
            _, exact = flat.search(new[10:], 10)
            floor_ms.append((time.perf_counter() - t0) * 1e3)
            recall.append(recall_at(exact, np.array([[nb["id"] for nb in pred.neighbours]])))
        total = np.add(add_ms, predict_ms).tolist()
        later = slice(1, None)  # the first round after opening is reported on its own

        def ms(values: list[float]) -> dict[str, float]:
            return {
                "median": round(statistics.median(values), 2),
                "min": round(min(values), 2),
                "max": round(max(values), 2),
            }

        def breakdown(rounds: list[dict[str, float]], part: str, totals: list[float]) -> dict[str, float]:
            names = list(STEPS[part])
            out = {n: round(statistics.median(r.get(n, 0.0) for r in rounds), 2) for n in names}
            out["rest"] = round(
                statistics.median(t - sum(r.get(n, 0.0) for n in names) for r, t in zip(rounds, totals)), 2
            )
            return out

        result["new_concept"] = {
            "rounds": ROUNDS,
            "first_round_after_open_ms": {
                "add": round(add_ms[0], 1),
                "predict": round(predict_ms[0], 1),
                "total": round(total[0], 1),
            },
            "later_rounds_ms": {
                "add_10": ms(add_ms[later]),
                "predict": ms(predict_ms[later]),
                "total": ms(total[later]),
                "raw_faiss_flat_add_and_search": ms(floor_ms[later]),
            },
            "steps_ms (first round)": {
                "add": breakdown(steps[:1], "add", add_ms[:1]),
                "predict": breakdown(steps[:1], "predict", predict_ms[:1]),
            },
            "steps_ms (later rounds, medians)": {
                "add": breakdown(steps[later], "add", add_ms[later]),
                "predict": breakdown(steps[later], "predict", predict_ms[later]),
            },
            "total_ms_each_round": [round(x, 1) for x in total],
            "best_concept_is_the_new_one": f"{right}/{ROUNDS}",
            "answered_unknown": f"{unknown}/{ROUNDS}",
            "neighbours_recall_at_10 (vs exact)": round(float(np.mean(recall)), 3),
            "index": clf.store.info()["spaces"]["joint"].get("index"),
        }
        clf.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    emit(result)


if __name__ == "__main__":
    main()
