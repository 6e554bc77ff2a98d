"""Batch work on Ray beside the single-machine commands, on this machine's CPUs (a local Ray runtime).

1. Embedding: `vecclf embed --ray` vs `vecclf add` on the same files, each a fresh process as users run it
   (Ray's start-up included), in interleaved rounds at each size: CIFAR-10 JPEGs (or seeded PNGs when the shared
   data is absent) and BANKING77 texts (or seeded sentences), with the offline preset (real weights: MobileNetV2,
   all-MiniLM-L6-v2); each command again on one input, which splits its time into start-up and the rate once
   running.
2. Import: rows/s of `vecclf import` of precomputed vectors from Parquet vs `Store.add` of the same vectors in
   batches of 20,000 (N seeded 512-d vectors, default 1,000,000).
3. Classification: rows/s of `vecclf predict --ray` over N stored-vector rows of Parquet (default 100,000) vs
   `ConceptClassifier.predict_vectors` in batches of 1,024 in one process.

    python benchmarks/bench_ray.py [--smoke] [--images 400,2000] [--texts 2000,10000] [--rounds 3] [--import-rows 1000000]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from _data import SHARED, emit, load_average, spread
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
    folder = tmp / "images-all"
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


def subsets(tmp: Path, kind: str, sizes: list[int]) -> dict[int, Path]:
    """The first ``size`` inputs of one seeded set, for each size (1 too): a folder of images or a .txt file."""
    out: dict[int, Path] = {}
    if kind == "images":
        every = sorted(image_files(tmp, max(sizes)).iterdir())
        for size in [1, *sizes]:
            folder = tmp / f"images-{size}"
            folder.mkdir()
            for f in every[:size]:
                shutil.copy(f, folder / f.name)
            out[size] = folder
    else:
        lines = text_file(tmp, max(sizes)).read_text(encoding="utf-8").splitlines()
        for size in [1, *sizes]:
            out[size] = tmp / f"texts-{size}.txt"
            out[size].write_text("\n".join(lines[:size]) + "\n", encoding="utf-8")
    return out


def embedding(tmp: Path, sizes: dict[str, list[int]], rounds: int) -> dict[str, Any]:
    """Each side's command on N inputs and on one, in interleaved rounds (add, embed --ray, add, ...), each a
    fresh process into a fresh store or folder. The one-input command is what a command costs before its
    first input (process, model, and for Ray its runtime, workers and actor); the difference is the rate
    once running."""
    out: dict[str, Any] = {"load_average_at_start": load_average(), "model": "offline", "rounds (interleaved)": rounds}
    for kind, counts in sizes.items():
        files = subsets(tmp, kind, counts)
        t: dict[tuple[int, str], list[float]] = {}
        for r in range(rounds):
            for size, src in files.items():
                store = tmp / f"add-{kind}-{size}-{r}"
                cli("init", "--store", str(store), "--model", "offline")
                t.setdefault((size, "add"), []).append(cli("add", "--store", str(store), str(src)))
                t.setdefault((size, "ray"), []).append(
                    cli("embed", str(src), "--model", "offline", "--out", str(tmp / f"ray-{kind}-{size}-{r}"))
                )
        med = {key: statistics.median(v) for key, v in t.items()}
        rows: dict[str, Any] = {
            "start_up_s (one-input command, median)": {
                "add": round(med[1, "add"], 2),
                "embed --ray": round(med[1, "ray"], 2),
            }
        }
        for size in counts:
            add, ray = med[size, "add"], med[size, "ray"]
            rows[f"{size} {kind}"] = {
                "vecclf_add_per_s": round(size / add, 1),
                "vecclf_embed_ray_per_s": round(size / ray, 1),
                "ray_over_add (throughput ratio, whole commands)": round(add / ray, 3),
                "ray_over_add once running (time past the one-input command)": round(
                    (add - med[1, "add"]) / (ray - med[1, "ray"]), 3
                ),
                "seconds": {
                    "add": spread(t[size, "add"]),
                    "embed --ray": spread(t[size, "ray"]),
                },
            }
        out[kind] = rows
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
    ap.add_argument("--images", default="400,2000", help="image counts, comma-separated")
    ap.add_argument("--texts", default="2000,10000", help="text counts, comma-separated")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--import-rows", type=int, default=1_000_000)
    ap.add_argument("--predict-rows", type=int, default=100_000)
    ap.add_argument("--only", choices=("embedding", "import", "predict"), help="run one part")
    args = ap.parse_args()
    if args.smoke:
        args.images, args.texts, args.rounds, args.import_rows, args.predict_rows = "8", "20", 1, 2_000, 500
    sizes = {
        kind: [int(x) for x in str(v).split(",") if x.strip()]
        for kind, v in (("images", args.images), ("texts", args.texts))
    }
    sizes = {kind: counts for kind, counts in sizes.items() if counts}  # --images "": texts only
    tmp = Path(tempfile.mkdtemp(prefix="vecclf-ray-"))
    try:
        parts = {
            "embedding": lambda: embedding(tmp, sizes, args.rounds),
            "import": lambda: importing(tmp, args.import_rows),
            "predict": lambda: predicting(tmp, args.predict_rows),
        }
        result: dict[str, Any] = {"benchmark": "ray"}
        for name, run in parts.items():
            if args.only in (None, name):
                result[name] = run()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    emit(result)


if __name__ == "__main__":
    main()
