"""Embedding throughput: `vecclf add` from JPEG files beside the bare model forward on ready tensors.

For each embedder (offline MobileNetV2; OpenCLIP ViT-B-32 with random weights — speed does not depend on them)
and each image size (CIFAR-10 32x32 JPEGs from ../shared/data, or generated ones; seeded 640x480 JPEGs):

- bare: the model's forward alone on pre-decoded, pre-processed batches (the ceiling);
- end to end: `ConceptClassifier.add(paths)` into a fresh store — read, decode, preprocess, forward, store.

Texts likewise: tokenised batches through the text tower vs `add_texts`.

    python benchmarks/bench_embed.py [--smoke]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _data import SHARED, emit
from PIL import Image

from vecclf.classifier import AddReport, ConceptClassifier
from vecclf.embed import Embedder
from vecclf.embed.offline import OfflineEmbedder
from vecclf.embed.openclip import OpenCLIPEmbedder
from vecclf.store import Store


def jpegs(folder: Path, n: int, size: tuple[int, int]) -> list[Path]:
    """CIFAR-10 test JPEGs when asked for 32x32 and available; else seeded smooth images with noise."""
    cifar = SHARED / "cifar10-test"
    if size == (32, 32) and cifar.is_dir():
        return sorted(cifar.rglob("*.jpg"))[:n]
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    w, h = size
    for i in range(n):
        base = np.linspace(0, 255, w, dtype=np.float32)[None, :, None] * rng.uniform(0.2, 1, 3)
        arr = np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
        path = folder / f"{i}.jpg"
        Image.fromarray(arr).save(path, quality=90)
        out.append(path)
    return out


def forward_fn(emb: Embedder) -> tuple[Callable[[list[Image.Image]], Any], Callable[[Any], Any]]:
    """(preprocess a batch, forward a prepared batch) for one embedder's image tower."""
    if isinstance(emb, OfflineEmbedder):
        model = emb._image_tower()
        return emb._image_tensor, model
    assert isinstance(emb, OpenCLIPEmbedder)
    return (lambda ims: torch.stack([emb._preprocess(im) for im in ims])), emb._model.encode_image


def end_to_end(emb: Embedder, add: Callable[[ConceptClassifier], AddReport]) -> float:
    """Inputs per second through ``add`` into a fresh store (nothing cached)."""
    tmp = Path(tempfile.mkdtemp(prefix="vecclf-embed-"))
    try:
        store = Store.create(tmp / "s", spec=emb.spec, identity=emb.identity, spaces=emb.spaces())
        with ConceptClassifier(store, emb) as clf:
            start = time.perf_counter()
            report = add(clf)
            return len(report.added) / (time.perf_counter() - start)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def compare(
    emb: Embedder,
    what: str,
    n: int,
    batches: list[Any],
    fwd: Callable[[Any], Any],
    add: Callable[[ConceptClassifier], AddReport],
) -> dict[str, Any]:
    """The bare forward over ready ``batches`` beside ``add`` from the raw inputs."""
    with torch.inference_mode():
        fwd(batches[0])  # warm-up
        start = time.perf_counter()
        for b in batches:
            fwd(b)
        bare = n / (time.perf_counter() - start)
    e2e = end_to_end(emb, add)
    return {
        what: n,
        "bare_forward_per_s": round(bare, 1),
        "end_to_end_per_s": round(e2e, 1),
        "ratio": round(e2e / bare, 3),
    }


def throughput(emb: Embedder, files: list[Path], batch: int) -> dict[str, Any]:
    prep, fwd = forward_fn(emb)
    images = [Image.open(p).convert("RGB") for p in files]
    tensors = [prep(images[i : i + batch]) for i in range(0, len(images), batch)]
    return compare(emb, "images", len(files), tensors, fwd, lambda clf: clf.add(files, ["c"]))


def text_throughput(emb: Embedder, texts: list[str]) -> dict[str, Any]:
    if isinstance(emb, OfflineEmbedder):
        model, tok = emb._text_tower()

        def fwd(chunk: list[str]) -> Any:
            return model(**tok(chunk, padding=True, truncation=True, max_length=256, return_tensors="pt"))

        batches = [texts[i : i + 64] for i in range(0, len(texts), 64)]
    else:
        assert isinstance(emb, OpenCLIPEmbedder)
        batches = [emb._tokenizer(texts[i : i + 64]) for i in range(0, len(texts), 64)]
        fwd = emb._model.encode_text
    return compare(emb, "texts", len(texts), batches, fwd, lambda clf: clf.add_texts(texts, ["c"]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vecclf-jpegs-"))
    small_n, large_n, text_n = (8, 4, 16) if args.smoke else (256, 256, 512)
    embedders: dict[str, Embedder] = {"offline (MobileNetV2 224px, MiniLM)": OfflineEmbedder()}
    if not args.smoke:
        embedders["ViT-B-32 (random weights)"] = OpenCLIPEmbedder("ViT-B-32", None)
    texts = [
        f"how do I {w} my card number {i}"
        for i, w in enumerate(["activate", "block", "top up", "verify"] * (text_n // 4))
    ]
    result: dict[str, Any] = {"benchmark": "embed", "device": "cpu", "threads": torch.get_num_threads(), "results": {}}
    result["image_batch"] = {name: emb.image_batch_size for name, emb in embedders.items()}  # type: ignore[attr-defined]
    try:
        small = jpegs(tmp / "small", small_n, (32, 32))
        large = jpegs(tmp / "large", large_n, (640, 480))
        for name, emb in embedders.items():
            result["results"][name] = {
                # the bare forward runs in the batches the embedder itself uses (small on a CPU: see embed/base.py)
                "cifar_32px_jpeg": throughput(emb, small, emb.image_batch_size),  # type: ignore[attr-defined]
                "640x480_jpeg": throughput(emb, large, emb.image_batch_size),  # type: ignore[attr-defined]
                "texts": text_throughput(emb, texts),
            }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    emit(result)


if __name__ == "__main__":
    main()
