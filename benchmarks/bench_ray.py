"""Batch work on Ray beside the single-machine commands, on this machine's CPUs (a local Ray runtime).

1. Embedding: `vecclf embed --ray` vs `vecclf add` on the same files, each a fresh process as users run it
   (Ray's start-up included): CIFAR-10 JPEGs (or seeded PNGs when the shared data is absent) and BANKING77
   texts (or seeded sentences), with the offline preset (real weights: MobileNetV2, all-MiniLM-L6-v2); each
   command again on one file, which splits its time into start-up and the rate once running.
2. Import: rows/s of `vecclf import` of precomputed vectors from Parquet vs `Store.add` of the same vectors in
   batches of 20,000 (N seeded 512-d vectors, default 1,000,000).
3. Classification: rows/s of `vecclf predict --ray` over N stored-vector rows of Parquet (default 100,000) vs
   `ConceptClassifier.predict_vectors` in batches of 1,024 in one process.

    python benchmarks/bench_ray.py [--smoke] [--images 1000] [--texts 5000] [--import-rows 1000000]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from _data import SHARED, emit, load_average
from bench_knn import clustered

from vecclf.exchange import header, rows_table
from vecclf.store import NewInput, Store


def cli(*args: str) -> float:
    """Wall seconds of one `vecclf` command in a fresh process."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "vecclf.cli", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"vecclf {' '.join(args)}: {done.stderr[-2000:]}")
    return time.perf_counter() - start


def image_files(tmp: Path, n: int) -> Path:
    folder = tmp / "images"
    folder.mkdir()
    cifar = sorted((SHARED / "cifar10-test").glob("*/*.jpg"))
    if cifar:
        for i, f in enumerate(cifar[:: max(1, len(cifar) // n)][:n]):
            shutil.copy(f, folder / f"{i:05d}.jpg")
    else:
        from PIL import Image

        rng = np.random.default_rng(0)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")
    return folder


def text_file(tmp: Path, n: int) -> Path:
    path = tmp / "texts.txt"
    source = SHARED / "banking77" / "train.csv"
    if source.is_file():
        import csv

        with source.open(newline="", encoding="utf-8") as fh:
            lines = [r["text"].replace("\n", " ") for r in csv.DictReader(fh)][:n]
    else:
        words = "card transfer pending refund account balance top up exchange rate fee limit".split()
        rng = np.random.default_rng(0)
        lines = [" ".join(rng.choice(words, 8)) for _ in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def embedding(tmp: Path, n_images: int, n_texts: int) -> dict[str, Any]:
    """Each side's command on all the files, and on one file: the one-file run is what a command costs before
    its first input (process, model, and for Ray its runtime, workers and actor), the difference is the rate
    once running."""
    out: dict[str, Any] = {"load_average_at_start": load_average(), "model": "offline"}
    for kind, src in (("images", image_files(tmp, n_images)), ("texts", text_file(tmp, n_texts))):
        count = n_images if kind == "images" else n_texts
        one = tmp / f"one-{kind}{src.suffix}"
        if src.is_dir():
            one.mkdir()
            first = sorted(src.iterdir())[0]
            shutil.copy(first, one / first.name)
        else:
            one.write_text(src.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
        t: dict[str, float] = {}
        for size, files in (("all", src), ("one", one)):
            store = tmp / f"add-{kind}-{size}"
            cli("init", "--store", str(store), "--model", "offline")
            t[f"add {size}"] = cli("add", "--store", str(store), str(files))
            t[f"embed --ray {size}"] = cli(
                "embed", str(files), "--model", "offline", "--out", str(tmp / f"ray-{kind}-{size}")
            )
        running_add, running_ray = t["add all"] - t["add one"], t["embed --ray all"] - t["embed --ray one"]
        out[kind] = {
            "inputs": count,
            "vecclf_add_per_s": round(count / t["add all"], 1),
            "vecclf_embed_ray_per_s": round(count / t["embed --ray all"], 1),
            "ray_over_add (throughput ratio, whole commands)": round(t["add all"] / t["embed --ray all"], 3),
            "start_up_s (a one-file command)": {
                "add": round(t["add one"], 1),
                "embed --ray": round(t["embed --ray one"], 1),
            },
            "ray_over_add once running (ratio of time past the one-file command)": round(running_add / running_ray, 3),
            "seconds": {name: round(v, 1) for name, v in t.items()},
        }
    return out


def importing(tmp: Path, n: int) -> dict[str, Any]:
    d = 512
    X, y = clustered(n, d, 20, seed=5)
    head = header({"kind": "bench"}, {"kind": "bench"}, {"joint": d})
    shards = tmp / "vectors"
    shards.mkdir()
    rows = [NewInput("text", "joint", f"h{i}", X[i], source=f"row {i}", concepts=(f"c{y[i]}",)) for i in range(n)]
    for start in range(0, n, 50_000):
        part = rows[start : start + 50_000]
        pq.write_table(
            rows_table(part, list(range(start + 1, start + 1 + len(part))), head), shards / f"{start:08d}.parquet"
        )
    load = load_average()
    store = Store.create(tmp / "by-add", spec={"kind": "bench"}, identity={"kind": "bench"}, spaces={"joint": d})
    start = time.perf_counter()
    for i in range(0, n, 20_000):
        store.add(rows[i : i + 20_000])
    store.close()
    t_add = time.perf_counter() - start
    del rows
    t_import = cli("import", "--store", str(tmp / "by-import"), str(shards))
    return {
        "load_average_at_start": load,
        "rows": n,
        "store_add_rows_per_s (in process, batches of 20,000, index saved at close)": round(n / t_add),
        "vecclf_import_parquet_rows_per_s (fresh process, store created)": round(n / t_import),
        "import_over_add (throughput ratio)": round(t_add / t_import, 3),
    }


def predicting(tmp: Path, n: int) -> dict[str, Any]:
    from vecclf.classifier import ConceptClassifier

    d = 512
    X, y = clustered(20_000 + n, d, 20, seed=6)
    store = Store.create(tmp / "st", spec={"kind": "bench"}, identity={"kind": "bench"}, spaces={"joint": d})
    store.add([NewInput("text", "joint", f"s{i}", X[i], concepts=(f"c{y[i]}",)) for i in range(20_000)])
    store.close()
    head = header({"kind": "bench"}, {"kind": "bench"}, {"joint": d})
    queries = [NewInput("text", "joint", f"q{i}", X[20_000 + i], source=f"q{i}") for i in range(n)]
    (tmp / "queries").mkdir()
    pq.write_table(rows_table(queries, list(range(1, n + 1)), head), tmp / "queries" / "q.parquet")
    load = load_average()
    t_ray = cli("predict", "--store", str(tmp / "st"), str(tmp / "queries"), "--ray", "--out", str(tmp / "answers"))
    start = time.perf_counter()
    with ConceptClassifier(Store.open(tmp / "st", read_only=True)) as clf:
        for i in range(0, n, 1024):
            clf.predict_vectors("joint", X[20_000 + i : 20_000 + i + 1024], method="knn")
    t_local = time.perf_counter() - start
    rows = pq.read_table(tmp / "answers").num_rows
    return {
        "load_average_at_start": load,
        "rows": n,
        "answers_written": rows,
        "predict_ray_rows_per_s (fresh process, Ray start included)": round(n / t_ray),
        "predict_vectors_rows_per_s (in process)": round(n / t_local),
        "ray_over_local (throughput ratio)": round(t_local / t_ray, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--texts", type=int, default=5000)
    ap.add_argument("--import-rows", type=int, default=1_000_000)
    ap.add_argument("--predict-rows", type=int, default=100_000)
    args = ap.parse_args()
    if args.smoke:
        args.images, args.texts, args.import_rows, args.predict_rows = 8, 20, 2_000, 500
    tmp = Path(tempfile.mkdtemp(prefix="vecclf-ray-"))
    try:
        result = {
            "benchmark": "ray",
            "embedding": embedding(tmp, args.images, args.texts),
            "import": importing(tmp, args.import_rows),
            "predict": predicting(tmp, args.predict_rows),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    emit(result)


if __name__ == "__main__":
    main()
