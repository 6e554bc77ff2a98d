"""Batched predictions: images/s of `predict` against `add` of the same JPEG files, three ways.

- in process: ``ConceptClassifier.add`` into a fresh store (so nothing comes from the embedding cache)
  against ``ConceptClassifier.predict`` of the same files over a store holding them, rounds interleaved;
- as users run them: ``vecclf add`` / ``vecclf predict`` in fresh processes (start-up and model load
  included), interleaved;
- one image, as a user types it: the wall time of ``vecclf predict one.jpg`` in a fresh process against the
  floor it cannot go below — a fresh process that loads the same model and embeds that one image (our loader;
  for the CLIP model also raw ``open_clip``), interleaved; target: at most 2x the floor. Models: the offline
  preset and OpenCLIP ViT-B-32 from a local checkpoint of random weights (speed does not depend on the weights);
- over HTTP (``vecclf serve`` on loopback): multi-file multipart ``POST /predict`` against ``POST /inputs``
  of the same files, in requests of ``--per-request`` files.

Files: the first ``--n`` CIFAR-10 test JPEGs (32x32) from ../shared/data, spread over the classes; generated
JPEGs when that folder is absent. Embedder: the offline preset (MobileNetV2; ``tiny-clip`` with --smoke).

    python benchmarks/bench_predict.py [--n 256] [--rounds 5] [--only one-image] [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from _data import SHARED, emit, interleaved, load_average, serving, spread
from PIL import Image

from vecclf.classifier import ConceptClassifier
from vecclf.embed import load_embedder
from vecclf.store import Store


def jpegs(n: int, tmp: Path) -> tuple[list[Path], str]:
    root = SHARED / "cifar10-test"
    if root.is_dir():
        classes = sorted(p for p in root.iterdir() if p.is_dir())
        per = -(-n // len(classes))
        files = [f for c in classes for f in sorted(c.glob("*.jpg"))[:per]][:n]
        return files, f"CIFAR-10 test JPEGs (32x32), {len(files)}"
    rng = np.random.default_rng(0)
    files = []
    for i in range(n):
        path = tmp / f"gen{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path, quality=90)
        files.append(path)
    return files, f"generated 32x32 JPEGs, {n}"


def rate(n: int, times: list[float]) -> dict[str, Any]:
    return {"images_per_s": round(n / statistics.median(times), 1), **spread(times)}


def in_process(files: list[Path], model: str, rounds: int, tmp: Path) -> dict[str, Any]:
    embedder = load_embedder(model)
    paths = [str(f) for f in files]
    stores = iter(range(10_000))

    def fresh() -> ConceptClassifier:
        path = tmp / f"inproc{next(stores)}"
        store = Store.create(path, spec=embedder.spec, identity=embedder.identity, spaces=embedder.spaces())
        return ConceptClassifier(store, embedder)

    full = fresh()
    full.add(paths, ["seen"])  # the store predictions run against (also warms the model)
    full.predict(paths[:8])

    def add() -> None:
        with fresh() as clf:
            report = clf.add(paths, ["x"])
            assert report.embedded == len(paths), report.to_dict()

    def predict() -> None:
        assert len(full.predict(paths)) == len(paths)

    times = interleaved({"add": add, "predict": predict}, rounds)
    full.close()
    out = {side: rate(len(files), t) for side, t in times.items()}
    out["ratio_predict_over_add"] = round(out["predict"]["images_per_s"] / out["add"]["images_per_s"], 3)
    return out


def cli(files: list[Path], model: str, rounds: int, tmp: Path) -> dict[str, Any]:
    vecclf = [sys.executable, "-m", "vecclf.cli"]
    paths = [str(f) for f in files]
    stores = iter(range(10_000))

    def init() -> Path:
        path = tmp / f"cli{next(stores)}"
        subprocess.run([*vecclf, "init", "--model", model, "--store", str(path)], check=True, capture_output=True)
        return path

    full = init()
    subprocess.run([*vecclf, "add", *paths, "--concept", "seen", "--store", str(full)], check=True, capture_output=True)
    times: dict[str, list[float]] = {"add": [], "predict": []}
    for _ in range(rounds):
        empty = init()  # made outside the timing
        for side, cmd in (
            ("add", [*vecclf, "add", *paths, "--concept", "x", "--store", str(empty)]),
            ("predict", [*vecclf, "predict", *paths, "--json", "--store", str(full)]),
        ):
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times[side].append(time.perf_counter() - start)
    out: dict[str, Any] = {side: rate(len(files), t) for side, t in times.items()}
    out["ratio_predict_over_add"] = round(out["predict"]["images_per_s"] / out["add"]["images_per_s"], 3)
    return out


def http(files: list[Path], model: str, rounds: int, per_request: int, tmp: Path) -> dict[str, Any]:
    data = [(f.name, f.read_bytes()) for f in files]
    batches = [data[i : i + per_request] for i in range(0, len(data), per_request)]

    def send(url: str, route: str, extra: dict[str, str]) -> None:
        with httpx.Client(base_url=url, timeout=300) as client:
            for batch in batches:
                files_part = [("file", (name, body, "image/jpeg")) for name, body in batch]
                r = client.post(route, files=files_part, data=extra)
                r.raise_for_status()

    full = tmp / "http-full"
    with ConceptClassifier.create(full, model) as clf:
        clf.add([str(f) for f in files], ["seen"])
    times: dict[str, list[float]] = {"add": [], "predict": []}
    with serving(full, "--read-only") as predict_url:
        send(predict_url, "/predict", {})  # warm
        for r in range(rounds):
            empty = tmp / f"http-empty{r}"
            ConceptClassifier.create(empty, model).close()
            with serving(empty) as add_url:  # a fresh store: nothing comes from the embedding cache
                for side, url, route, extra in (
                    ("add", add_url, "/inputs", {"concept": "x"}),
                    ("predict", predict_url, "/predict", {}),
                ):
                    start = time.perf_counter()
                    send(url, route, extra)
                    times[side].append(time.perf_counter() - start)
    out: dict[str, Any] = {side: rate(len(files), t) for side, t in times.items()}
    out["ratio_predict_over_add"] = round(out["predict"]["images_per_s"] / out["add"]["images_per_s"], 3)
    out["files_per_request"] = per_request
    return out


FLOOR_OURS = """
import sys
from PIL import Image
from vecclf.embed.registry import load_embedder, parse_model
model, checkpoint, image = sys.argv[1:4]
load_embedder(parse_model(model, checkpoint or None)).embed_images([Image.open(image).convert("RGB")])
"""

FLOOR_OPEN_CLIP = """
import sys
import open_clip, torch
from PIL import Image
name, checkpoint, image = sys.argv[1:4]
model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=checkpoint)
model.eval()
with torch.no_grad():
    model.encode_image(preprocess(Image.open(image).convert("RGB")).unsqueeze(0))
"""


def one_image(files: list[Path], rounds: int, tmp: Path, smoke: bool) -> dict[str, Any]:
    """Fresh-process ``vecclf predict one.jpg`` against a fresh process that only loads the model and embeds it."""
    vecclf = [sys.executable, "-m", "vecclf.cli"]
    models: list[tuple[str, str, str]] = [("offline", "", "offline preset (MobileNetV2 + MiniLM, real weights)")]
    if smoke:
        models = [("tiny-clip", "", "tiny-clip")]
    else:
        import open_clip
        import torch

        checkpoint = tmp / "vit-b-32-random.pt"
        torch.save(open_clip.create_model("ViT-B-32").state_dict(), checkpoint)
        models.append(("ViT-B-32", str(checkpoint), "OpenCLIP ViT-B-32, local checkpoint (random weights)"))
    query = str(tmp / "one.jpg")
    Image.open(files[-1]).convert("RGB").resize((640, 480)).save(query)
    out: dict[str, Any] = {}
    for model, checkpoint, described in models:
        store = tmp / f"one-{model}"
        subprocess.run(
            [
                *vecclf,
                "init",
                "--model",
                model,
                *(["--checkpoint", checkpoint] if checkpoint else []),
                "--store",
                str(store),
            ],
            check=True,
            capture_output=True,
        )
        half = len(files) // 2
        for concept, part in (("a", files[:half]), ("b", files[half:-1])):
            subprocess.run(
                [*vecclf, "add", *map(str, part), "--concept", concept, "--store", str(store)],
                check=True,
                capture_output=True,
            )
        sides = {
            "vecclf_predict": [*vecclf, "predict", query, "--store", str(store)],
            "floor_our_loader": [sys.executable, "-c", FLOOR_OURS, model, checkpoint, query],
        }
        if checkpoint:
            sides["floor_raw_open_clip"] = [sys.executable, "-c", FLOOR_OPEN_CLIP, model, checkpoint, query]
        sides["python_start"] = [sys.executable, "-c", "pass"]
        times = interleaved(
            {k: lambda c=c: subprocess.run(c, check=True, capture_output=True) for k, c in sides.items()}, rounds
        )
        entry: dict[str, Any] = {"model": described, "stored_examples": len(files) - 1, "query": "640x480 JPEG"}
        entry.update({k: spread(t) for k, t in times.items()})
        floor = min(statistics.median(t) for k, t in times.items() if k.startswith("floor"))
        entry["ratio_over_floor"] = round(statistics.median(times["vecclf_predict"]) / floor, 3)
        entry["target"] = "<= 2x"
        out[model] = entry
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--per-request", type=int, default=32)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--only", choices=["one-image"], help="run only the one-image latency part")
    args = ap.parse_args()
    model = "tiny-clip" if args.smoke else "offline"
    if args.smoke:
        args.n, args.rounds, args.per_request = 16, 1, 8
    started_load = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        files, described = jpegs(args.n, Path(tmp))
        if args.only == "one-image":
            emit(
                {
                    "benchmark": "one_image_predict",
                    "load_average_at_start": started_load,
                    "one_image": one_image(files[:21], args.rounds, Path(tmp), args.smoke),
                }
            )
            return
        result = {
            "benchmark": "predict_vs_add",
            "files": described,
            "embedder": model,
            "load_average_at_start": started_load,
            "in_process": in_process(files, model, args.rounds, Path(tmp)),
            "cli_fresh_process": cli(files, model, max(1, args.rounds - 2), Path(tmp)),
            "http_multipart": http(files, model, max(1, args.rounds - 2), args.per_request, Path(tmp)),
            "one_image": one_image(files[:21], max(1, args.rounds - 2), Path(tmp), args.smoke),
        }
    emit(result)


if __name__ == "__main__":
    main()
