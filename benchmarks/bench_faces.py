"""Face identification and verification on ORL faces: the faces preset beside the generic image embedder.

Both embed the same photos (20 people x 10 greyscale photos). For 1, 3 and 5 enrolment photos per
person (seeded random splits), the rest are queries:

- identification: k-NN vote over the enrolled photos (vecclf's KNNClassifier, as `vecclf predict`);
- verification: every query against every person, score = best similarity to that person's photos;
  ROC-AUC over all pairs, and accuracy at the thresholds vecclf learns from the enrolment photos alone
  (`vecclf.classify.openset`, as `vecclf verify`): true-accept and true-reject rates and their mean;
- open set: 15 people enrolled, the other 5 should be answered "unknown" (`KNNClassifier.predict_open`).

The store's own path for the same questions (and its predict/verify agreement) is `bench_openset.py`.

    python benchmarks/bench_faces.py [--smoke]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
from _data import SHARED, emit
from PIL import Image

from vecclf.classify.estimators import KNNClassifier
from vecclf.classify.openset import calibrate, evidence
from vecclf.embed.faces import FaceEmbedder
from vecclf.embed.offline import OfflineEmbedder
from vecclf.evaluate import roc_auc
from vecclf.labels import UNKNOWN


def load(root: Path, people: int) -> tuple[list[Image.Image], np.ndarray]:
    folders = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: int(p.name[1:]))[:people]
    images, labels = [], []
    for folder in folders:
        for f in sorted(folder.glob("*.pgm"), key=lambda p: int(p.stem)):
            images.append(Image.open(f).convert("RGB"))
            labels.append(folder.name)
    return images, np.array(labels)


def embed_faces(images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray, float]:
    """Largest-face descriptors; rows without a face are NaN (counted as misses downstream)."""
    emb = FaceEmbedder()
    start = time.perf_counter()
    out = np.full((len(images), emb.dim), np.nan, dtype=np.float32)
    found = np.zeros(len(images), dtype=bool)
    for i, im in enumerate(images):
        faces = emb.detect(im)
        if faces:
            out[i] = emb.embed_images([faces[0].chip])[0]
            found[i] = True
    return out, found, time.perf_counter() - start


def _search(V: np.ndarray) -> Any:
    def search(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        sims = q @ V.T
        rows = np.argsort(-sims, axis=1)[:, :k]
        return np.take_along_axis(sims, rows, axis=1), rows

    return search


def protocol(X: np.ndarray, y: np.ndarray, shots: int, seeds: int, identity: bool) -> dict[str, Any]:
    """Median over seeded splits of identification, verification and open-set figures."""
    rows: dict[str, list[float]] = {}
    people = np.unique(y)
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        enrol = np.concatenate([rng.permutation(np.flatnonzero(y == p))[:shots] for p in people])
        query = np.setdiff1d(np.arange(len(y)), enrol)
        enrol = enrol[np.isfinite(X[enrol, 0])]  # a photo without a face cannot be enrolled
        Xe, ye = X[enrol], y[enrol]
        ok_q = np.isfinite(X[query, 0])
        knn = KNNClassifier(k=10).fit(Xe, ye)
        pred = np.full(len(query), "", dtype=object)
        pred[ok_q] = knn.predict(X[query][ok_q])
        rows.setdefault("identification_accuracy", []).append(float(np.mean(pred == y[query])))
        # verification: each query x each enrolled person
        Xq = np.nan_to_num(X[query], nan=0.0)
        sims = Xq @ Xe.T
        scores = np.stack([sims[:, ye == p].max(axis=1) for p in people], axis=1)
        scores[~ok_q] = -1.0  # no face: never verified
        genuine = y[query][:, None] == people[None, :]
        rows.setdefault("verification_roc_auc", []).append(roc_auc(genuine.ravel(), scores.ravel()) or 0.0)
        classes = [str(p) for p in people]
        columns = np.searchsorted(people, ye)
        calibrated = calibrate(*evidence(Xe, columns, classes, _search(Xe)), quantile=0.01, identity=identity)
        cal = calibrated.calibration
        accept = scores >= np.array([calibrated.verify[c] for c in classes])[None, :]
        tar, trr = float(np.mean(accept[genuine])), float(np.mean(~accept[~genuine]))
        rows.setdefault("verification_true_accept", []).append(tar)
        rows.setdefault("verification_true_reject", []).append(trr)
        rows.setdefault("verification_balanced_accuracy", []).append((tar + trr) / 2)
        rows.setdefault("threshold", []).append(cal.verify_threshold)
        # open set: enrol 3/4 of the people, ask about everyone
        known = people[: max(1, len(people) * 3 // 4)]
        keep = np.isin(ye, known)
        open_knn = KNNClassifier(k=10, unknown_quantile=0.01, identity=identity).fit(Xe[keep], ye[keep])
        inside = np.isin(y[query], known) & ok_q
        outside = ~np.isin(y[query], known) & ok_q
        answer = open_knn.predict_open(np.nan_to_num(X[query], nan=1.0))
        rows.setdefault("open_set_known_accuracy", []).append(float(np.mean(answer[inside] == y[query][inside])))
        rows.setdefault("open_set_unknown_recall", []).append(float(np.mean(answer[outside] == UNKNOWN)))
    return {k: round(float(np.median(v)), 4) for k, v in rows.items()} | {"splits": seeds}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    root = SHARED / "att-faces"
    if not root.is_dir():
        emit({"benchmark": "faces", "skipped": f"{root} not found"})
        return
    images, y = load(root, people=4 if args.smoke else 20)
    seeds = 1 if args.smoke else 5
    Xf, found, t_faces = embed_faces(images)
    generic = OfflineEmbedder()
    generic.embed_images(images[:2])  # load the weights before timing
    start = time.perf_counter()
    Xg = generic.embed_images(images)
    t_generic = time.perf_counter() - start
    result: dict[str, Any] = {
        "benchmark": "faces",
        "dataset": f"ORL faces, {len(np.unique(y))} people x 10 photos (92x112 greyscale)",
        "faces_found": f"{int(found.sum())}/{len(found)}",
        "images_per_s": {
            "faces (detect + align + descriptor)": round(len(images) / t_faces, 1),
            "generic (MobileNetV2, 224 px)": round(len(images) / t_generic, 1),
        },
        "results": {},
    }
    for shots in (1, 3) if args.smoke else (1, 3, 5):
        result["results"][f"{shots}-shot"] = {
            "faces (dlib ResNet, 128-d)": protocol(Xf, y, shots, seeds, identity=True),
            "generic (MobileNetV2-ImageNet, 1280-d)": protocol(Xg, y, shots, seeds, identity=False),
        }
    emit(result)


if __name__ == "__main__":
    main()
