"""Open-set answers on real data, through the store's own prediction path, beside scikit-learn.

- Texts, BANKING77 (offline MiniLM embeddings): 10 intents held out as unknown (seeded), the other 67 known,
  with 1, 5, 10 or all training examples per known intent (3 seeded draws each). For vecclf (k-NN, and the
  head) and for scikit-learn's ``LogisticRegression`` (default settings) with its maximum probability as the
  score: unknown recall at the operating point that keeps 95% of in-scope test answers (the threshold chosen
  on the test set for both sides alike: it compares scores, not calibration). vecclf's score is the answer's
  nearest-example similarity over its concept's threshold. With vecclf's default settings: the share of
  in-scope answers kept, open-set accuracy (unknown counts as wrong) against closed-set accuracy, and
  unknown recall.
- Faces, ORL s1-s20 (the faces preset's dlib descriptors): 15 people enrolled with 1, 3 or 5 photos, 5 never
  enrolled (5 seeded splits): identified (right person, not unknown), strangers answered unknown,
  verification of every photo against every enrolled person (genuine accepted, impostors rejected), and how
  often verify accepts a photo's nearest person while predict says unknown (must be 0).

    python benchmarks/bench_openset.py [--smoke]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from _data import SHARED, banking77, emit, load_average

from vecclf.classifier import ConceptClassifier
from vecclf.store import NewInput, Store


def _store(path: Path, space: str, dim: int, kind: str, X: np.ndarray, y: np.ndarray) -> ConceptClassifier:
    identity = {"kind": kind, "bench": "openset"}
    store = Store.create(path, spec={"kind": kind}, identity=identity, spaces={space: dim})
    rows = [
        NewInput("text" if space == "text" else "image", space, f"r{i}", X[i], concepts=(str(y[i]),))
        for i in range(len(X))
    ]
    for start in range(0, len(rows), 5000):
        store.add(rows[start : start + 5000])
    return ConceptClassifier(store)


def recall_at_kept(score_in: np.ndarray, score_out: np.ndarray, kept: float = 0.95) -> float:
    """Share of out-of-scope scores below the cut that keeps ``kept`` of the in-scope ones."""
    return float(np.mean(score_out < np.quantile(score_in, 1 - kept)))


def _margins(preds: list[Any]) -> np.ndarray:
    return np.array(
        [
            (p.similarity if p.similarity is not None else -1.0) - (p.threshold if p.threshold is not None else -1.0)
            for p in preds
        ]
    )


def texts(smoke: bool, tmp: Path) -> dict[str, Any] | None:
    from sklearn.linear_model import LogisticRegression

    d = banking77(smoke=smoke)
    if d is None:
        return None
    Xtr, ytr, Xte, yte = d["Xtr"], d["ytr"], d["Xte"], d["yte"]
    intents = np.unique(ytr)
    unknown = np.random.default_rng(0).choice(intents, 10, replace=False)
    known = np.setdiff1d(intents, unknown)
    inside = np.isin(yte, known)
    out: dict[str, Any] = {"known_intents": len(known), "held_out": len(unknown), "settings": {}}
    for shots in (1, 5, 10, None):
        rows: dict[str, list[float]] = {}
        for seed in range(1 if smoke else 3):
            rng = np.random.default_rng(seed)
            pick = np.concatenate([rng.permutation(np.flatnonzero(ytr == c))[:shots] for c in known])
            Xe, ye = Xtr[pick], ytr[pick]
            clf = _store(tmp / f"t{shots}-{seed}", "text", Xe.shape[1], "bench-text", Xe, ye)
            with clf:
                closed = clf.predict_vectors("text", Xte, method="knn", unknown_quantile=0.0)
                opened = clf.predict_vectors("text", Xte, method="knn")
                ok_closed = np.array([p.concept for p in closed]) == yte
                answer = np.array([p.concept for p in opened])
                rows.setdefault("knn_closed_accuracy", []).append(float(ok_closed[inside].mean()))
                rows.setdefault("knn_default_kept", []).append(float((answer != "unknown")[inside].mean()))
                rows.setdefault("knn_default_accuracy", []).append(float((answer == yte)[inside].mean()))
                rows.setdefault("knn_default_unknown_recall", []).append(float((answer == "unknown")[~inside].mean()))
                margin = _margins(opened)
                rows.setdefault("knn_recall_at_95_kept", []).append(recall_at_kept(margin[inside], margin[~inside]))
                if len(np.unique(ye)) > 1:
                    clf.train(mode="exclusive")
                    head = clf.predict_vectors("text", Xte, method="head")
                    head_answer = np.array([p.concept for p in head])
                    hm = _margins(head)
                    rows.setdefault("head_default_kept", []).append(float((head_answer != "unknown")[inside].mean()))
                    rows.setdefault("head_recall_at_95_kept", []).append(recall_at_kept(hm[inside], hm[~inside]))
            lr = LogisticRegression(max_iter=2000).fit(Xe, ye)
            msp = lr.predict_proba(Xte).max(axis=1)
            rows.setdefault("sklearn_lr_accuracy", []).append(float((lr.predict(Xte) == yte)[inside].mean()))
            rows.setdefault("sklearn_lr_msp_recall_at_95_kept", []).append(recall_at_kept(msp[inside], msp[~inside]))
        summary = {k: round(float(np.median(v)), 4) for k, v in rows.items()}
        summary["recall_gain_over_sklearn"] = round(
            summary["knn_recall_at_95_kept"] - summary["sklearn_lr_msp_recall_at_95_kept"], 4
        )
        summary["default_accuracy_drop"] = round(summary["knn_closed_accuracy"] - summary["knn_default_accuracy"], 4)
        out["settings"]["all" if shots is None else f"{shots}-shot"] = summary
    return out


def faces(smoke: bool, tmp: Path) -> dict[str, Any] | None:
    root = SHARED / "att-faces"
    if not root.is_dir():
        return None
    from bench_faces import embed_faces, load

    images, y = load(root, people=8 if smoke else 20)
    X, found, _ = embed_faces(images)
    people = np.unique(y)
    out: dict[str, Any] = {"people": len(people), "enrolled": len(people) * 3 // 4, "settings": {}}
    for shots in (1, 3, 5):
        rows: dict[str, list[float]] = {}
        for seed in range(2 if smoke else 5):
            rng = np.random.default_rng(seed)
            known = people[rng.permutation(len(people))[: len(people) * 3 // 4]]
            enrol = np.concatenate([rng.permutation(np.flatnonzero(y == p))[:shots] for p in known])
            enrol = enrol[found[enrol]]
            query = np.setdiff1d(np.flatnonzero(found), enrol)
            clf = _store(tmp / f"f{shots}-{seed}", "image", X.shape[1], "faces", X[enrol], y[enrol])
            with clf:
                preds = clf.predict_vectors("image", X[query], method="knn")
                answer = np.array([p.concept for p in preds])
                inside = np.isin(y[query], known)
                rows.setdefault("identified", []).append(float((answer == y[query])[inside].mean()))
                rows.setdefault("strangers_unknown", []).append(float((answer == "unknown")[~inside].mean()))
                genuine, impostor, disagree = [], [], 0
                for person in known:
                    checks = clf.predictor.verify("image", X[query], str(person), [str(i) for i in query])
                    accepted = np.array([c["verified"] for c in checks])
                    genuine += accepted[y[query] == person].tolist()
                    impostor += (~accepted[y[query] != person]).tolist()
                    nearest = np.array([p.nearest == person for p in preds])
                    disagree += int(np.sum(accepted & nearest & (answer == "unknown")))
                rows.setdefault("verification_genuine_accepted", []).append(float(np.mean(genuine)))
                rows.setdefault("verification_impostors_rejected", []).append(float(np.mean(impostor)))
                rows.setdefault("verify_accepts_but_predict_unknown", []).append(float(disagree))
        out["settings"][f"{shots}-shot"] = {k: round(float(np.median(v)), 4) for k, v in rows.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    load_at_start = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        result = {
            "benchmark": "openset",
            "load_average_at_start": load_at_start,
            "texts_banking77": texts(args.smoke, Path(tmp)) or "skipped: ../shared/data/banking77 not found",
            "faces_orl": faces(args.smoke, Path(tmp)) or "skipped: ../shared/data/att-faces not found",
        }
    emit(result)


if __name__ == "__main__":
    main()
