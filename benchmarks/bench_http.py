"""HTTP /predict throughput and latency on loopback vs the same calls in-process.

Builds an offline-preset store from BANKING77 (10 examples per intent; generated texts when the shared
data is absent), measures in-process ``predict`` calls, then starts ``vecclf serve`` in a subprocess and
drives ``POST /predict`` with a concurrent httpx load generator: by text (embedding + k-NN) and by a stored
vector id (k-NN only).

    python benchmarks/bench_http.py [--requests 400] [--concurrency 8] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _data import SHARED, emit, serving

from vecclf.classifier import ConceptClassifier


def _stats(latencies: list[float], wall: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "rps": round(len(ordered) / wall, 1),
        "p50_ms": round(1000 * statistics.median(ordered), 2),
        "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2),
    }


def build_store(path: Path, smoke: bool) -> tuple[list[str], list[int]]:
    import csv

    train = SHARED / "banking77" / "train.csv"
    with ConceptClassifier.create(path, "tiny-clip" if smoke else "offline") as clf:
        if train.is_file() and not smoke:
            clf.import_path(train, limit_per_concept=10)
            with (SHARED / "banking77" / "test.csv").open(newline="", encoding="utf-8") as fh:
                queries = [r["text"] for r in csv.DictReader(fh)]
        else:
            for c in range(5):
                clf.add_texts([f"concept {c} example {i}" for i in range(5)], [f"c{c}"])
            queries = [f"query number {i}" for i in range(200)]
        ids = [int(i) for i in clf.store.vectors(clf.embedder.space_of("text"))[0][:200]]
    return queries, ids


def in_process(path: Path, queries: list[str], ids: list[int], n: int) -> dict[str, Any]:
    with ConceptClassifier.open(path, read_only=True) as clf:
        clf.predict(texts=[queries[0]])  # load the model and index
        out = {}
        for name, call in (
            ("text", lambda i: clf.predict(texts=[queries[i % len(queries)]])),
            ("stored_id", lambda i: clf.predict_stored([ids[i % len(ids)]])),
        ):
            lat = []
            start = time.perf_counter()
            for i in range(n):
                t = time.perf_counter()
                call(i)
                lat.append(time.perf_counter() - t)
            out[name] = _stats(lat, time.perf_counter() - start)
    return out


async def _load(url: str, bodies: list[dict[str, Any]], concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            t = time.perf_counter()
            r = await client.post("/predict", json=body)
            latencies.append(time.perf_counter() - t)
            r.raise_for_status()

    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        await client.post("/predict", json=bodies[0])  # warm
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return _stats(latencies, wall)


def over_http(path: Path, queries: list[str], ids: list[int], n: int, concurrency: int) -> dict[str, Any]:
    with serving(path, "--read-only") as url:
        return {
            "text": asyncio.run(_load(url, [{"text": queries[i % len(queries)]} for i in range(n)], concurrency)),
            "stored_id": asyncio.run(_load(url, [{"id": ids[i % len(ids)]} for i in range(n)], concurrency)),
        }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.requests, args.concurrency = 20, 2
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store"
        queries, ids = build_store(path, args.smoke)
        local = in_process(path, queries, ids, args.requests)
        remote = over_http(path, queries, ids, args.requests, args.concurrency)
    emit(
        {
            "benchmark": "http_predict",
            "embedder": "tiny-clip" if args.smoke else "offline (MiniLM-L6 texts)",
            "concurrency": args.concurrency,
            "in_process_sequential": local,
            "http_loopback": remote,
            "rps_ratio_http_over_in_process": {
                k: round(remote[k]["rps"] / local[k]["rps"], 3) for k in ("text", "stored_id")
            },
        }
    )


if __name__ == "__main__":
    main()
