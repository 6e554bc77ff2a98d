"""k-NN voting: equal to brute-force numpy, negatives, ties, open-set, estimator conventions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vecclf.classify.estimators import KNNClassifier
from vecclf.classify.knn import rank, vote
from vecclf.errors import InvalidInputError, NotFittedError
from vecclf.labels import UNKNOWN, LabelView


def _data(seed: int, n: int = 60, d: int = 8, c: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d))
    y = rng.integers(0, c, n)
    X = centres[y] + 0.6 * rng.normal(size=(n, d))
    return X.astype(np.float32), np.array([f"c{v}" for v in y])


def _brute(X: np.ndarray, y: np.ndarray, Q: np.ndarray, k: int, temperature: float) -> np.ndarray:
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    classes = sorted(set(y))
    out = np.zeros((len(Q), len(classes)))
    for i, q in enumerate(Qn):
        s = Xn @ q
        top = np.argsort(-s, kind="stable")[:k]
        w = np.exp((s[top] - s[top].max()) / temperature)
        for j, t in enumerate(top):
            out[i, classes.index(y[t])] += w[j]
        out[i] /= w.sum()
    return out


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 80), temperature=st.sampled_from([0.02, 0.1, 1.0]))
def test_scores_equal_brute_force_numpy(seed: int, k: int, temperature: float) -> None:
    X, y = _data(seed)
    Q, _ = _data(seed + 1, n=10)
    model = KNNClassifier(k=k, temperature=temperature).fit(X, y)
    proba = model.predict_proba(Q)  # without negatives, the vote shares themselves
    want = _brute(X, y, Q, min(k, len(X)), temperature)
    assert np.allclose(proba, want, atol=1e-4)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert list(model.classes_) == sorted(set(y))


def test_estimator_conventions() -> None:
    X, y = _data(0)
    model = KNNClassifier(k=5)
    with pytest.raises(NotFittedError):
        model.predict(X)
    assert model.fit(X, y) is model
    assert model.predict_proba(X[:4]).shape == (4, len(model.classes_))
    assert set(model.predict(X)) <= set(model.classes_)
    acc = np.mean(model.predict(X) == y)
    assert acc > 0.8
    with pytest.raises(InvalidInputError):
        model.predict(X[:, :3])
    for bad in (np.full((1, 8), np.nan), np.zeros((0, 8)), np.zeros((1, 3, 8))):
        with pytest.raises(InvalidInputError):
            model.predict(bad)
    assert model.predict(np.zeros((1, 8)))[0] in model.classes_  # similar to nothing, yet an answer
    with pytest.raises(InvalidInputError):
        KNNClassifier(k=0).fit(X, y)


def test_uniform_majority_and_deterministic_ties() -> None:
    # Two neighbours at the same similarity, one of each class: the tie goes to the higher support, then name.
    view = LabelView(
        0, np.array([1, 2]), np.array([1, 2]), ["a", "b"], np.array([1, 2]), np.array([[1, 0], [0, 1]], np.int8)
    )
    sims = np.array([[0.5, 0.5]], np.float32)
    ids = np.array([[2, 1]])
    v = vote(sims, ids, view, k=2, weighting="uniform")
    assert np.allclose(v.scores, [[0.5, 0.5]])
    assert rank(v.scores, v.support)[0, 0] == 0  # "a" by name
    sims2 = np.array([[0.6, 0.5]], np.float32)  # now "b" (id 2) is closer: support decides
    v2 = vote(sims2, ids, view, k=2, weighting="uniform")
    assert rank(v2.scores, v2.support)[0, 0] == 1


def test_negatives_lower_a_concept() -> None:
    # Three neighbours: one positive for "a"; one is a *negative* example of "a" and positive for "b".
    matrix = np.array([[1, 0], [-1, 1], [0, 1]], np.int8)
    view = LabelView(0, np.array([1, 2, 3]), np.array([1, 2, 3]), ["a", "b"], np.array([1, 2, 3]), matrix)
    sims = np.array([[0.9, 0.9, 0.1]], np.float32)
    ids = np.array([[1, 2, 3]])
    with_neg = vote(sims, ids, view, k=3, weighting="uniform").scores
    without = vote(sims, ids, view, k=3, weighting="uniform", negative_weight=0.0).scores
    assert with_neg[0, 0] < without[0, 0]
    assert with_neg[0, 0] == pytest.approx(0.0)
    assert with_neg[0, 1] == pytest.approx(2 / 3)


def test_padding_and_unlabelled_neighbours_are_ignored() -> None:
    view = LabelView(0, np.array([1, 2, 3]), np.array([1, 2, 3]), ["a"], np.array([1]), np.array([[1]], np.int8))
    sims = np.array([[0.9, 0.8, -np.inf]], np.float32)
    ids = np.array([[2, 1, -1]])  # id 2 is unlabelled, -1 is FAISS padding
    v = vote(sims, ids, view, k=5)
    assert v.neighbours[0] == [(1, 1, pytest.approx(0.8), 0)]
    assert v.scores[0, 0] == pytest.approx(1.0)


def test_open_set_rejects_far_inputs() -> None:
    rng = np.random.default_rng(0)
    d = 32
    centres = np.eye(d)[:3] * 5
    X = np.concatenate([c + rng.normal(size=(30, d)) * 0.5 for c in centres]).astype(np.float32)
    y = np.repeat(["a", "b", "c"], 30)
    far = (np.eye(d)[10] * 5 + rng.normal(size=(20, d)) * 0.5).astype(np.float32)
    near = np.concatenate([c + rng.normal(size=(10, d)) * 0.5 for c in centres]).astype(np.float32)
    model = KNNClassifier(k=5, unknown_quantile=0.05).fit(X, y)
    assert np.mean(model.predict_open(far) == UNKNOWN) > 0.9
    assert np.mean(model.predict_open(near) == np.repeat(["a", "b", "c"], 10)) > 0.85
    assert UNKNOWN not in set(model.predict(far))  # predict stays within classes_
    plain = KNNClassifier(k=5, unknown_quantile=0.0).fit(X, y)
    assert UNKNOWN not in set(plain.predict_open(far))


def test_store_predictions_reject_unrelated_input(clf, image_files) -> None:
    from conftest import solid_image

    for name in ("red", "green", "blue"):
        clf.add(image_files[name] * 1, [name])
        clf.add(
            [
                solid_image(
                    (220, 30, 30) if name == "red" else (30, 200, 40) if name == "green" else (30, 40, 220), seed=s
                )
                for s in range(10, 16)
            ],
            [name],
        )
    clf.unknown_quantile = 0.05
    pred = clf.predict([solid_image((250, 250, 250), seed=99)])[0]
    assert pred.concept == "unknown" and pred.nearest is not None and pred.threshold is not None
    ok = clf.predict([solid_image((220, 30, 30), seed=42)])[0]
    assert ok.concept == "red"
