"""Index kinds at scale: bytes per vector, build time, query speed and recall@10 against exact search.

N seeded, clustered 512-d unit vectors (default 1,000,000) and 1,000 held-out queries from the same distribution.
Each kind is built by vecclf's own code (`vecclf.store.index.build`, as a store does); recall@10 is measured against
the flat (exact) index's answers.

    python benchmarks/bench_index.py [--smoke] [--n 1000000]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from typing import Any

import vecclf  # noqa: F401  (first: it sets the OpenMP wait policy, read when faiss loads)

# isort: split
import faiss
import numpy as np
from _data import emit, timed
from bench_knn import clustered

from vecclf.store import index as _index


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--n", type=int, default=1_000_000)
    args = ap.parse_args()
    n, d, nq, k = (20_000, 64, 100, 10) if args.smoke else (args.n, 512, 1_000, 10)
    data, _ = clustered(n + nq, d, 20)
    X, Q = data[:n], data[n:]
    ids = np.arange(1, n + 1, dtype=np.int64)
    result: dict[str, Any] = {"benchmark": "index", "n": n, "d": d, "queries": nq, "k": k, "kinds": {}}
    truth: np.ndarray | None = None
    flat_batch = flat_single = 0.0
    for kind in ("flat", "fp16", "sq8", "ivf"):
        start = time.perf_counter()
        index = _index.build(kind, d, ids, X)
        build_s = time.perf_counter() - start
        assert _index.kind_of(index) == kind, (kind, _index.kind_of(index))
        size = len(faiss.serialize_index(index))
        t_batch, (_, found) = timed(lambda index=index: index.search(Q, k), 3)
        singles = []
        for i in range(21):
            t0 = time.perf_counter()
            index.search(Q[i : i + 1], k)
            singles.append(time.perf_counter() - t0)
        t_single = statistics.median(singles)
        if truth is None:
            truth, flat_batch, flat_single = found, t_batch, t_single
        row: dict[str, Any] = {
            "bytes_per_vector": round(size / n, 1),
            "build_s": round(build_s, 2),
            "batch_qps": round(nq / t_batch),
            "single_query_ms": round(t_single * 1e3, 3),
            "batch_speedup_vs_flat": round(flat_batch / t_batch, 2),
            "single_speedup_vs_flat": round(flat_single / t_single, 2),
            "recall_at_10": round(_index.recall_at(truth, found), 4),
        }
        if kind == "ivf":
            ivf = faiss.downcast_index(index)
            row |= {"nlist": int(ivf.nlist), "nprobe (calibrated)": int(ivf.nprobe)}
        result["kinds"][kind] = row
        del index
        gc.collect()
    result["auto"] = f"flat below {_index.AUTO_IVF_THRESHOLD:,} vectors, ivf from there"
    emit(result)


if __name__ == "__main__":
    main()
