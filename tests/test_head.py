"""Logistic head, zero-shot, --method auto, evaluation and the schema migration."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import solid_image

from vecclf.classifier import ConceptClassifier
from vecclf.classify.estimators import KNNClassifier, LogisticHead
from vecclf.classify.head import HeadWeights
from vecclf.errors import InvalidInputError, ModalityError, NotFittedError
from vecclf.evaluate import evaluate_arrays, roc_auc


def _blobs(seed: int, n: int = 300, d: int = 16, k: int = 4, spread: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    y = rng.integers(0, k, n)
    X = centres[y] + spread * rng.normal(size=(n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), np.array([f"c{v}" for v in y], dtype=object)


@pytest.mark.parametrize("model", [LogisticHead(), KNNClassifier(k=7)], ids=["head", "knn"])
def test_estimator_conformance(model) -> None:
    X, y = _blobs(0)
    with pytest.raises(NotFittedError):
        model.predict(X)
    assert model.fit(X, y) is model
    assert list(model.classes_) == sorted(set(y))
    proba = model.predict_proba(X[:10])
    assert proba.shape == (10, 4) and np.allclose(proba.sum(axis=1), 1.0)
    # columns follow classes_: the argmax column is the predicted class
    assert list(model.classes_[np.argmax(proba, axis=1)]) == list(model.predict(X[:10]))


def test_head_matches_sklearn_accuracy() -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = _blobs(1, n=2000, d=32, k=6, spread=1.6)
    Xtr, ytr, Xte, yte = X[:1500], y[:1500], X[1500:], y[1500:]
    ours = LogisticHead(C=10.0, class_weight=None).fit(Xtr, ytr)  # defaults: stops early
    ref = LogisticRegression(C=10.0, max_iter=1000).fit(Xtr, ytr)
    acc_ours = np.mean(ours.predict(Xte) == yte)
    acc_ref = np.mean(ref.predict(Xte) == yte)
    assert acc_ours >= acc_ref - 0.01, (acc_ours, acc_ref)
    # run to convergence, it is the same objective: probabilities agree closely
    converged = LogisticHead(C=10.0, class_weight=None, tol_change=1e-12, max_iter=1000).fit(Xtr, ytr)
    assert np.abs(converged.predict_proba(Xte) - ref.predict_proba(Xte)).max() < 0.02


def test_multilabel_head_uses_negatives() -> None:
    X, y = _blobs(2, n=200, d=8, k=2, spread=0.5)
    Y = np.where(y[:, None] == np.array(["c0", "c1"]), 1, -1).astype(np.int8)
    Y[:20, 1] = 0  # unlabelled for c1: ignored, not treated as negative
    head = LogisticHead("multilabel").fit(X, Y, classes=["c0", "c1"])
    p = head.predict_proba(X)
    assert p.shape == (200, 2) and not np.allclose(p.sum(axis=1), 1.0)  # independent sigmoids
    assert np.mean((p[:, 0] > 0.5) == (y == "c0")) > 0.9
    with pytest.raises(InvalidInputError):
        LogisticHead("multilabel").fit(X, Y)  # classes missing
    with pytest.raises(InvalidInputError):
        LogisticHead().fit(X, ["a"] * len(X))  # one class


def test_head_state_round_trip_without_pickle() -> None:
    X, y = _blobs(3)
    head = LogisticHead().fit(X, y)
    meta, arrays = head.weights_.to_state()
    assert json.loads(meta)["classes"] == sorted(set(y))
    again = LogisticHead.from_weights(HeadWeights.from_state(meta, arrays))
    assert np.allclose(again.predict_proba(X), head.predict_proba(X))
    assert list(again.predict(X)) == list(head.predict(X))


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="no CUDA device on this machine")
def test_head_on_cuda_matches_cpu() -> None:
    X, y = _blobs(4)
    cpu = LogisticHead(device="cpu").fit(X, y)
    gpu = LogisticHead(device="cuda").fit(X, y)
    assert np.abs(cpu.predict_proba(X) - gpu.predict_proba(X)).max() < 1e-3


def _colour_store(clf, n: int = 6) -> None:
    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
    for name, rgb in colours.items():
        clf.add([solid_image(rgb, seed=s) for s in range(n)], [name])


def test_train_persist_and_stale(clf) -> None:
    _colour_store(clf)
    summary = clf.train()
    assert summary["joint"]["mode"] == "exclusive" and summary["joint"]["examples"] == 18
    pred = clf.predict([solid_image((220, 30, 30), seed=99)], method="auto")[0]
    assert pred.method == "head" and pred.concept == "red"
    path = clf.store.path
    clf.close()
    with ConceptClassifier.open(path) as again:  # persisted in DuckDB, reloaded
        head, fresh = again.head("joint")
        assert fresh and list(head.classes) == ["blue", "green", "red"]
        again.add([solid_image((240, 240, 20), seed=s) for s in range(4)], ["yellow"])
        head, fresh = again.head("joint")
        assert not fresh  # trained before "yellow" existed
        auto = again.predict([solid_image((240, 240, 20), seed=50)])[0]
        assert auto.method == "knn" and auto.concept == "yellow"  # auto avoids the stale head
        assert again.predict([solid_image((240, 240, 20), seed=50)], method="head")[0].concept != "yellow"


def test_head_requires_training(clf) -> None:
    _colour_store(clf, n=2)
    with pytest.raises(NotFittedError):
        clf.predict([solid_image((220, 30, 30))], method="head")


def test_multilabel_training_with_negatives(clf) -> None:
    _colour_store(clf, n=4)
    clf.add([solid_image((200, 60, 60), seed=s) for s in range(3)], ["red"], negatives=["green"])
    summary = clf.train()
    assert summary["joint"]["mode"] == "multilabel"
    pred = clf.predict([solid_image((30, 200, 40), seed=77)], method="head")[0]
    assert pred.concept == "green" and pred.rejected_by is None and pred.scores["green"] > 0.5


def test_zeroshot_without_examples_and_as_prior(clf) -> None:
    clf.add_concepts(["cat", "dog"])
    pred = clf.predict(texts=["kitten"])[0]
    assert pred.method == "zeroshot" and pred.concept in {"cat", "dog"} and not pred.neighbours
    assert set(pred.scores) <= {"cat", "dog"} and abs(sum(pred.scores.values()) - 1) < 1e-3
    clf.add_texts(["kitten"], ["cat"])
    blended = clf.predict(texts=["kitten"], method="zeroshot")[0]
    # one example of cat (k-NN vote 1.0) blended with the name prior weighted as 2 examples; dog has none
    assert blended.scores["cat"] == pytest.approx(1 / 3 + 2 / 3 * pred.scores.get("cat", 0.0), abs=1e-5)
    assert blended.scores.get("dog", 0.0) == pytest.approx(pred.scores.get("dog", 0.0), abs=1e-5)
    assert clf.predict(texts=["kitten"])[0].method == "knn"  # auto: examples exist now


def test_zeroshot_image_needs_joint_space(tmp_path) -> None:
    with ConceptClassifier.create(tmp_path / "s", "offline") as clf:
        clf.add_concepts(["cat"])
        with pytest.raises(ModalityError, match="joint"):
            clf.predict([solid_image((1, 2, 3))], method="zeroshot")
        clf.add_texts(["my card is lost", "card missing"], ["lost card"])
        clf.add_texts(["exchange rate please"], ["exchange rate"])
        pred = clf.predict(texts=["what rate do you give for euros"], method="zeroshot")[0]
        assert pred.concept == "exchange rate"


def test_verify_with_real_text_embeddings(tmp_path) -> None:
    lost = [
        "I lost my card",
        "my card is missing",
        "I can't find my bank card",
        "my card was stolen",
        "someone took my card",
        "I misplaced my debit card",
        "where is my card, I lost it",
        "card lost yesterday",
    ]
    rates = [
        "what is the exchange rate",
        "how much is a euro in dollars",
        "currency conversion rate",
        "rate for pounds to euros",
        "exchange rates today",
        "what rate do you use for currency",
    ]
    with ConceptClassifier.create(tmp_path / "s", "offline") as clf:
        clf.add_texts(lost, ["lost card"])
        clf.add_texts(rates, ["exchange rate"])
        yes = clf.verify(texts=["I have lost my credit card", "my card is gone"], concept="lost card")
        no = clf.verify(texts=["what's the weather in Paris", "how do I change my PIN"], concept="lost card")
    assert [v["verified"] for v in yes] == [True, True]
    assert [v["verified"] for v in no] == [False, False]
    assert all(v["threshold"] == yes[0]["threshold"] for v in yes + no)
    assert min(v["score"] for v in yes) > max(v["score"] for v in no)


def test_evaluate_writes_json_and_plots(clf, tmp_path) -> None:
    _colour_store(clf, n=5)
    report = clf.evaluate(method="knn", out_dir=tmp_path / "ev")
    assert report["accuracy"] > 0.9 and report["examples"] == 15
    assert report["confusion"]["labels"] == ["blue", "green", "red", "unknown"]
    assert json.loads((tmp_path / "ev" / "evaluation.json").read_text())["accuracy"] == report["accuracy"]
    for png in ("confusion.png", "pr_curves.png"):
        assert (tmp_path / "ev" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    head = clf.evaluate(method="head", folds=3, out_dir=tmp_path / "ev2")
    assert head["protocol"] == "stratified 3-fold" and head["accuracy"] > 0.9


def test_loo_and_metrics_against_brute_force() -> None:
    X, y = _blobs(5, n=80, d=8, k=3, spread=1.0)
    classes = sorted(set(y))
    Y = np.where(y[:, None] == np.array(classes), 1, -1).astype(np.int8)
    report = evaluate_arrays(X, Y, classes, method="knn", k=1)
    # brute force 1-NN leave-one-out
    S = X @ X.T
    np.fill_diagonal(S, -np.inf)
    brute = np.mean(y[np.argmax(S, axis=1)] == y)
    assert report["accuracy"] == pytest.approx(brute, abs=1e-4)
    assert roc_auc(np.array([True, False, True, False]), np.array([0.9, 0.1, 0.8, 0.3])) == 1.0
    assert roc_auc(np.array([True, False]), np.array([0.5, 0.5])) == 0.5


def test_migration_from_schema_1(clf) -> None:
    _colour_store(clf, n=2)
    import duckdb

    path = clf.store.path
    clf.close()
    with duckdb.connect(str(path / "store.duckdb")) as con:  # make it a schema-1 store, as older vecclf wrote
        con.execute("DROP TABLE heads")
        con.execute("DROP TABLE thumbnails")
        con.execute("ALTER TABLE concepts DROP COLUMN threshold")
        con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    with ConceptClassifier.open(path) as again:
        assert again.store.schema_version == 4
        again.train()
        assert again.head("joint") is not None
        added = again.add([solid_image((200, 30, 30))], ["red"])  # the thumbnails table exists again
        assert again.store.thumbnail(added.ids[0])[:2] == b"\xff\xd8"  # a JPEG


def test_auto_mode_is_chosen_per_space(tmp_path) -> None:
    """A negative text example makes the text head multi-label, not the image head beside it."""
    with ConceptClassifier.create(tmp_path / "s", "offline") as clf:
        clf.add_texts(["my card is lost", "card missing"], ["lost_card"], negatives=["rates"])
        clf.add_texts(["exchange rate please", "euro rate"], ["rates"])
        for name, rgb in (("red", (220, 30, 30)), ("blue", (30, 40, 220))):
            clf.add([solid_image(rgb, seed=s) for s in range(3)], [name])
        modes = {space: s["mode"] for space, s in clf.train().items()}
    assert modes == {"text": "multilabel", "image": "exclusive"}


@pytest.mark.parametrize("mode", ["exclusive", "multilabel"])
def test_head_objective_gradient_and_backends_agree(mode) -> None:
    from vecclf.classify.lbfgs import NumpyObjective, TorchObjective

    X, y = _blobs(5, n=120, d=8, k=3)
    _, target = np.unique(y, return_inverse=True)
    if mode == "multilabel":
        target = np.where(np.eye(3)[target] > 0, 1.0, 0.0).astype(np.float32)
        target[::7] = 0.5  # any target in [0, 1] is a valid objective; checks the sigmoid algebra
    sw = np.random.default_rng(0).uniform(0.5, 2.0, size=target.shape).astype(np.float32)
    theta = np.random.default_rng(1).normal(size=3 * 9)
    with NumpyObjective(mode, X, target, sw, 0.01, threads=1) as ours:
        f, g = ours(theta)
        eps, numeric = 1e-3, []
        for i in range(0, len(theta), 4):
            e = np.zeros_like(theta)
            e[i] = eps
            numeric.append((ours(theta + e)[0] - ours(theta - e)[0]) / (2 * eps))
    assert np.allclose(g[::4], numeric, atol=2e-3)
    f_torch, g_torch = TorchObjective(mode, X, target, sw, 0.01, device="cpu")(theta)
    assert abs(f - f_torch) < 1e-4 and np.abs(g - g_torch).max() < 1e-4


def test_minimise_reaches_the_exact_minimum_of_a_quadratic() -> None:
    from vecclf.classify.lbfgs import minimise

    rng = np.random.default_rng(0)
    M = rng.normal(size=(30, 30))
    A, b = M @ M.T + np.eye(30), rng.normal(size=30)
    x, iterations = minimise(lambda x: (0.5 * x @ A @ x - b @ x, A @ x - b), np.zeros(30), tol=1e-6, tol_change=0)
    assert np.abs(x - np.linalg.solve(A, b)).max() < 1e-5 and iterations < 100


def test_warm_start_from_the_previous_head_agrees_in_fewer_iterations() -> None:
    from vecclf.classify.head import fit_head

    X, y = _blobs(6, n=3000, d=32, k=12, spread=1.2)
    classes, target = np.unique(y, return_inverse=True)
    names = [str(c) for c in classes]
    old = fit_head(X[target < 11], target[target < 11], names[:11], C=10.0)
    cold = fit_head(X, target, names, C=10.0)
    warm = fit_head(X, target, names, C=10.0, warm_start=old)
    assert warm.n_iter < cold.n_iter
    same = np.argmax(cold.decision_function(X), 1) == np.argmax(warm.decision_function(X), 1)
    assert same.mean() > 0.995


def test_small_heads_train_on_one_thread_without_torch(clf, tmp_path) -> None:
    import subprocess
    import sys

    _colour_store(clf)
    path = clf.store.path
    clf.close()
    code = (
        "import sys, json; from vecclf.cli import main; "
        f"rc = main(['train', '--store', {str(path)!r}, '--json']); "
        "print(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    last = json.loads(done.stdout.strip().splitlines()[-1])
    assert last == {"rc": 0, "torch": False}, done.stderr[-2000:]
    from threadpoolctl import threadpool_info

    from vecclf.classify.lbfgs import NumpyObjective

    X, y = _blobs(7)
    with NumpyObjective("exclusive", X, np.unique(y, return_inverse=True)[1], np.ones(len(X), np.float32), 0.1, None):
        assert {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"} == {1}
