"""Shared helpers for benchmarks: seeded data, cached offline embeddings of the shared sets, timing."""

from __future__ import annotations

import csv
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

SHARED = Path(os.environ.get("VECCLF_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
CACHE = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """Where the numbers came from (with the load average when this is called, i.e. at the end)."""
    import torch
    from threadpoolctl import threadpool_info

    cpu = Path("/proc/cpuinfo")
    info = dict(ln.split(":", 1) for ln in cpu.read_text().splitlines()[:30] if ":" in ln) if cpu.exists() else {}
    info = {key.strip(): value.strip() for key, value in info.items()}
    return {
        "platform": platform.platform(),
        "processor": f"{info.get('model name', platform.processor())}, family {info.get('cpu family')} model {info.get('model')}",
        "cpus": os.cpu_count(),
        # which kernel each BLAS runs: the faiss-cpu wheel's OpenBLAS may not know a newer processor
        "blas": [
            f"{Path(lib['filepath']).name}: {lib.get('architecture')}, {lib['num_threads']} threads"
            for lib in threadpool_info()
            if lib["user_api"] == "blas"
        ],
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%d"),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, for the start of a run."""
    return [round(x, 2) for x in os.getloadavg()]


def spread(times: list[float]) -> dict[str, Any]:
    """Median and min-max of repeated timings (seconds)."""
    return {
        "median_s": round(statistics.median(times), 4),
        "min_s": round(min(times), 4),
        "max_s": round(max(times), 4),
        "runs": len(times),
    }


def interleaved(sides: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """Wall times of each side over ``rounds`` rounds, run in turn (ours, peer, ours, peer...) so that
    a change in the machine's load falls on both sides alike."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, fn in sides.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


@contextmanager
def serving(store: Path, *args: str) -> Iterator[str]:
    """`vecclf serve` over ``store`` in its own process on a free loopback port; yields its URL."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "VECCLF_STORE": str(store)}
    env.pop("VECCLF_TOKEN", None)
    cmd = [sys.executable, "-m", "vecclf.cli", "serve", "--port", str(port), *args]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("server did not start") from None
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def timed(fn: Callable[[], Any], repeats: int = 3) -> tuple[float, Any]:
    """Median wall time of ``repeats`` runs and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def synthetic(n: int, d: int, k: int, seed: int = 0, signal: float = 0.006) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around ``k`` random centres: hard enough that accuracy is well below 100%."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)).astype(np.float32)
    y = rng.integers(0, k, n)
    X = centres[y] * signal + rng.normal(size=(n, d)).astype(np.float32) / np.sqrt(d)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), y


def banking77(smoke: bool = False) -> dict[str, Any] | None:
    """BANKING77 train/test embedded with the offline text tower (cached)."""
    root = SHARED / "banking77"
    if not (root / "train.csv").is_file():
        return None
    cache = CACHE / f"banking77{'-smoke' if smoke else ''}.npz"
    if not cache.is_file():
        from vecclf.embed.offline import OfflineEmbedder

        def read(name: str) -> tuple[list[str], list[str]]:
            with (root / name).open(newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
            if smoke:
                rows = rows[:: max(1, len(rows) // 400)]
            return [r["text"] for r in rows], [r["category"] for r in rows]

        emb = OfflineEmbedder()
        (tr_t, tr_y), (te_t, te_y) = read("train.csv"), read("test.csv")
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez(cache, Xtr=emb.embed_texts(tr_t), ytr=np.array(tr_y), Xte=emb.embed_texts(te_t), yte=np.array(te_y))
    with np.load(cache) as z:
        return {k: z[k] for k in z.files}


def cifar10(per_class_train: int = 200, per_class_test: int = 100, smoke: bool = False) -> dict[str, Any] | None:
    """A seeded split of the CIFAR-10 test JPEGs embedded with the offline image tower (cached)."""
    root = SHARED / "cifar10-test"
    if not root.is_dir():
        return None
    if smoke:
        per_class_train, per_class_test = 6, 4
    cache = CACHE / f"cifar10-{per_class_train}-{per_class_test}.npz"
    if not cache.is_file():
        from PIL import Image

        from vecclf.embed.offline import OfflineEmbedder

        rng = np.random.default_rng(0)
        tr, te = [], []
        for c in sorted(p.name for p in root.iterdir() if p.is_dir()):
            files = sorted((root / c).iterdir())
            pick = rng.permutation(len(files))[: per_class_train + per_class_test]
            tr += [(files[i], c) for i in pick[:per_class_train]]
            te += [(files[i], c) for i in pick[per_class_train:]]
        emb = OfflineEmbedder()

        def embed(rows: list[tuple[Path, str]]) -> np.ndarray:
            return emb.embed_images([Image.open(p).convert("RGB") for p, _ in rows])

        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez(
            cache, Xtr=embed(tr), ytr=np.array([c for _, c in tr]), Xte=embed(te), yte=np.array([c for _, c in te])
        )
    with np.load(cache) as z:
        return {k: z[k] for k in z.files}


def emit(result: dict[str, Any]) -> None:
    """Print the benchmark's JSON document."""
    print(json.dumps({"machine": machine(), **result}, indent=2))
