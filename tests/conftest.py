"""Shared fixtures: real stores on disk, the tiny OpenCLIP config, generated media, shared data paths."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on a model hub from tests
os.environ.setdefault("HF_ENDPOINT", "http://127.0.0.1:9")  # and never reach one, even where a test lifts offline mode
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# CI runs the same hypothesis examples every time (a landing run must not depend on luck); local runs explore.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, skipping the test when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared evaluation data not found at {path} (it sits beside the repo in CI)")
    return path


def solid_image(color: tuple[int, int, int], size: int = 48, seed: int = 0) -> Image.Image:
    """A noisy image around one colour: similar colours embed close even with random weights."""
    rng = np.random.default_rng(seed)
    base = np.array(color, dtype=np.float64)[None, None, :]
    arr = np.clip(base + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def png_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="session")
def tiny_embedder():  # type: ignore[no-untyped-def]
    from vecclf.embed import load_embedder

    return load_embedder("tiny-clip")


@pytest.fixture()
def clf(tmp_path: Path, tiny_embedder) -> Iterator:  # type: ignore[no-untyped-def]
    """A fresh tiny-CLIP store in a temporary directory."""
    from vecclf.classifier import ConceptClassifier
    from vecclf.store import Store

    store = Store.create(
        tmp_path / "store", spec=tiny_embedder.spec, identity=tiny_embedder.identity, spaces=tiny_embedder.spaces()
    )
    c = ConceptClassifier(store, tiny_embedder)
    yield c
    c.close()


@pytest.fixture()
def image_files(tmp_path: Path) -> dict[str, list[Path]]:
    """Three colour concepts, four JPEGs each, written to disk."""
    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
    out: dict[str, list[Path]] = {}
    for name, rgb in colours.items():
        folder = tmp_path / "images" / name
        folder.mkdir(parents=True)
        out[name] = []
        for i in range(4):
            p = folder / f"{i}.jpg"
            solid_image(rgb, seed=i).save(p, quality=95)
            out[name].append(p)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(store: Path, log_path: Path, *args: str) -> Iterator[str]:
    """`vecclf serve` over ``store`` in its own process on a free loopback port; yields its URL."""
    import httpx

    env = {**os.environ, "VECCLF_STORE": str(store)}
    env.pop("VECCLF_TOKEN", None)
    port = free_port()
    with log_path.open("wb") as log:
        cmd = [sys.executable, "-m", "vecclf.cli", "serve", "--port", str(port), *args]
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, log_path.read_text(errors="replace")
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.fixture()
def small_disk() -> Path:  # type: ignore[misc]
    """A 4 MiB tmpfs (needs root, as in CI); skipped where mounting is not allowed."""
    mount = Path(f"/tmp/vecclf-tmpfs-{uuid.uuid4().hex[:8]}")
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        mount.rmdir()
        pytest.skip(
            f"cannot mount a small tmpfs here ({done.stderr.decode().strip()}); the injected-failure test still runs"
        )
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        mount.rmdir()
