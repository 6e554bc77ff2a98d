"""Open-set thresholds: the rule on synthetic evidence, duplicates, shrinkage, and one contract for every method."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import solid_image

from vecclf.classify.openset import _pooled_quantile, calibrate, check_quantile, evidence, genuine_similarities
from vecclf.errors import InvalidInputError


def _clusters(per_class: int, n_classes: int, spread: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, 32))
    X = np.repeat(centres, per_class, axis=0) + spread * rng.normal(size=(n_classes * per_class, 32))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32), np.repeat(np.arange(n_classes), per_class)


def _exact_search(X: np.ndarray):  # type: ignore[no-untyped-def]
    def search(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        sims = q @ X.T
        order = np.argsort(-sims, axis=1)[:, :k]
        return np.take_along_axis(sims, order, axis=1), order

    return search


def _thresholds(X: np.ndarray, y: np.ndarray, q: float = 0.01, identity: bool = False):  # type: ignore[no-untyped-def]
    classes = [f"c{i}" for i in range(int(y.max()) + 1)]
    genuine, impostor = evidence(X, y, classes, _exact_search(X))
    calibrated = calibrate(genuine, impostor, quantile=q, identity=identity)
    return (calibrated.open_set, calibrated.calibration), genuine, impostor


def test_separated_concepts_get_a_cut_between_genuine_and_impostor() -> None:
    X, y = _clusters(per_class=6, n_classes=5, spread=0.2)
    (values, cal), _, _ = _thresholds(X, y)
    assert cal.method == "eer" and cal.genuine == 30 and cal.impostor == 30
    sims = X @ X.T
    same = np.equal.outer(y, y)
    worst_genuine = sims[same & ~np.eye(len(X), dtype=bool)].min()
    best_impostor = sims[~same].max()
    assert all(best_impostor < t < worst_genuine for t in values.values())


def test_overlapping_concepts_keep_almost_every_genuine_answer() -> None:
    X, y = _clusters(per_class=40, n_classes=6, spread=1.2, seed=1)
    (values, cal), genuine, _ = _thresholds(X, y)
    pooled = np.concatenate(list(genuine.values()))
    rejected = np.mean(pooled < np.mean(list(values.values())))
    assert cal.method == "eer" and rejected <= 0.03  # about q = 1% of genuine similarities fall below


def test_shrinkage_pulls_small_concepts_to_the_pooled_estimate() -> None:
    big, yb = _clusters(per_class=200, n_classes=3, spread=0.8, seed=2)
    small = big[yb == 0][:3] * 0 + _clusters(per_class=3, n_classes=1, spread=0.01, seed=3)[0]  # 3 near-copies
    X = np.concatenate([big, small]).astype(np.float32)
    y = np.concatenate([yb, np.full(3, 3)])
    (values, _), genuine, _ = _thresholds(X, y)
    own = np.quantile(genuine["c3"], 0.01)  # ~1.0: its three examples are nearly identical
    pooled = np.quantile(np.concatenate(list(genuine.values())), 0.01)
    assert abs(values["c3"] - pooled) < abs(values["c3"] - own)  # 3 examples weigh 3 against 100


def test_thresholds_kept_between_calls_are_those_computed_afresh() -> None:
    """A caller's memo (each concept's genuine values sorted once) gives the same thresholds, to the bit, as a
    calibration from scratch: the pooled quantile is taken from each concept's lowest values only."""
    rng = np.random.default_rng(11)
    memo: dict = {}
    for _ in range(60):
        genuine = {f"c{i}": rng.normal(0.7, 0.05, rng.integers(0, 900)).astype(np.float32) for i in range(8)}
        genuine["ties"] = np.round(rng.normal(0.8, 0.05, rng.integers(1, 30)), 2).astype(np.float32)
        impostor = {c: rng.normal(0.4, 0.05, 50) for c in genuine}
        for q in (0.001, 0.01, 0.2, 0.49):
            kept = calibrate(genuine, impostor, quantile=q, memo=memo)
            fresh = calibrate(genuine, impostor, quantile=q)
            assert kept.open_set == fresh.open_set and kept.verify == fresh.verify
        pooled = np.concatenate([np.asarray(v, np.float64) for v in genuine.values()])
        for q in (0.0, 0.001, 0.01, 0.2, 0.5, 0.99, 1.0):  # the pooled quantile itself, at any quantile
            assert _pooled_quantile(genuine, pooled, q, memo) == float(np.quantile(pooled, q))


def test_one_example_per_concept_and_other_edges() -> None:
    few, yf = _clusters(per_class=1, n_classes=4, spread=0.0)
    assert _thresholds(few, yf)[0][1].method == "none"  # 4 impostor similarities: too few to fit anything
    one_each, y = _clusters(per_class=1, n_classes=6, spread=0.0)
    (values, cal), _, _ = _thresholds(one_each, y)
    assert cal.method == "impostors-only" and cal.genuine == 0 and cal.impostor == 6
    (strict, _), _, _ = _thresholds(one_each, y, identity=True)
    assert min(strict.values()) > max(values.values())  # a face model trusts impostors: a strict cut
    single, ys = _clusters(per_class=5, n_classes=1, spread=0.3)
    assert _thresholds(single, ys)[0][1].method == "genuine-only"
    lone, yl = _clusters(per_class=1, n_classes=1, spread=0.0)
    assert _thresholds(lone, yl)[0][0] == {"c0": -np.inf}
    assert all(v == -np.inf for v in _thresholds(*_clusters(4, 3, 0.5), q=0.0)[0][0].values())
    for bad in (-0.1, 0.5, 1.5, float("nan"), True):
        with pytest.raises(InvalidInputError):
            check_quantile(bad)


def test_duplicates_are_never_their_own_neighbours() -> None:
    X, _ = _clusters(per_class=5, n_classes=1, spread=0.3)
    twice = np.concatenate([X, X])
    assert np.allclose(np.sort(genuine_similarities(twice)), np.sort(genuine_similarities(X)))


def test_adding_everything_twice_changes_no_answer(clf, tmp_path) -> None:
    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
    images = {name: [solid_image(rgb, seed=s) for s in range(5)] for name, rgb in colours.items()}
    texts = {"red": ["a red apple", "cherries"], "blue": ["the sky", "sea water"]}
    for name in colours:
        clf.add(images[name], [name])
    for name, t in texts.items():
        clf.add_texts(t, [name])
    queries = [solid_image((200, 40, 40), seed=50), solid_image((250, 250, 250), seed=51)]
    before = [p.to_dict() for p in clf.predict(queries, texts=["a ripe tomato"])]
    verified = clf.verify(queries, concept="red")
    count = clf.store.count()
    for name in colours:
        report = clf.add(images[name], [name])
        assert not report.added and len(report.duplicates) == 5
    for name, t in texts.items():
        assert len(clf.add_texts(t, [name]).duplicates) == 2
    assert clf.store.count() == count
    assert [p.to_dict() for p in clf.predict(queries, texts=["a ripe tomato"])] == before
    assert clf.verify(queries, concept="red") == verified
    # kept on purpose, the copies are still never each other's neighbours in the thresholds
    thresholds = clf.thresholds("joint")
    for name in colours:
        clf.add(images[name], [name], keep_duplicates=True)
    assert clf.store.count() == count + 15
    assert clf.thresholds("joint") == pytest.approx(thresholds, abs=1e-6)


def test_duplicates_merge_their_labels(clf) -> None:
    img = solid_image((10, 200, 10), seed=1)
    first = clf.add([img], ["green"])
    again = clf.add([img, img], ["plant"], negatives=["red"])
    assert again.duplicates == [
        {"id": first.ids[0], "kind": "image", "source": "<input 0>"},
        {"id": first.ids[0], "kind": "image", "source": "<input 1>"},
    ]
    (record,) = clf.store.get(first.ids)
    assert record.concepts == ["green", "plant"] and record.negatives == ["red"]


@pytest.mark.parametrize("index", ["flat", "ivf"])
def test_a_query_beside_a_new_concepts_examples_is_never_unknown(tmp_path, index) -> None:
    """The new-concept round of benchmarks/bench_scale.py at small scale: each round's query is answered with
    the concept just added (never unknown), in a store that already holds many concepts, whatever the index."""
    from vecclf.classifier import ConceptClassifier
    from vecclf.store import NewInput, Store

    rng = np.random.default_rng(3)
    d, n = 64, 12_000 if index == "ivf" else 3000
    centres = rng.normal(size=(160, d)).astype(np.float32)
    sub = rng.integers(0, 160, n)
    X = centres[sub] + rng.normal(size=(n, d)).astype(np.float32) * 1.5
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    store = Store.create(
        tmp_path / "s", spec={"kind": "bench"}, identity={"kind": "t"}, spaces={"joint": d}, index=index
    )
    store.add([NewInput("text", "joint", f"h{i}", X[i], concepts=(f"c{sub[i] % 20}",)) for i in range(n)])
    store.close()  # the index is built (trained, for IVF) as the store closes
    clf = ConceptClassifier(Store.open(tmp_path / "s"))
    clf.warm(background=False)
    assert clf.store.info()["spaces"]["joint"]["index"] == index
    answers = []
    for round_ in range(25):
        centre = rng.normal(size=d).astype(np.float32)
        new = centre + rng.normal(size=(11, d)).astype(np.float32) * 0.3
        new /= np.linalg.norm(new, axis=1, keepdims=True)
        name = f"new{round_}"
        clf.store.add([NewInput("text", "joint", f"{name}-{i}", new[i], concepts=(name,)) for i in range(10)])
        (pred,) = clf.predict_vectors("joint", new[10:], method="knn")
        answers.append((pred.concept, name))
    clf.close()
    assert all(concept == name for concept, name in answers), answers


def test_older_concepts_stacked_grow_in_place_and_restack_when_one_changes() -> None:
    """A new concept's examples meet every older concept's sample in one product: the stack is extended as
    concepts are added (not copied together again), holds each sample's vectors once (the samples become views of
    it), and is rebuilt when a concept's sample is replaced or goes."""
    from vecclf.classify.thresholds import _Sample, _Stacked

    rng = np.random.default_rng(0)
    values = [rng.normal(size=(int(rng.integers(1, 9)), 8)).astype(np.float32) for _ in range(12)]
    samples = [(f"c{i}", _Sample(v.copy(), np.zeros(len(v)))) for i, v in enumerate(values)]
    stacked = _Stacked()
    buffers = set()
    for n in range(1, 13):
        rows = stacked.of(samples[:n])
        np.testing.assert_array_equal(rows, np.vstack(values[:n]))
        assert stacked.offsets == [0, *np.cumsum([len(v) for v in values[:n]]).tolist()]
        assert all(s.vectors.base is rows.base for _, s in samples[:n])  # views of the stack: held once
        np.testing.assert_array_equal(samples[2][1].vectors, values[2])
        buffers.add(id(rows.base))
    assert len(buffers) <= 6  # grown by half again each time: a handful of allocations for twelve additions
    values[3] = values[3] + 1  # an older concept measured again: a new sample, stacked again
    samples[3] = ("c3", _Sample(values[3].copy(), np.zeros(len(values[3]))))
    np.testing.assert_array_equal(stacked.of(samples), np.vstack(values))
    del samples[5], values[5]  # a concept deleted
    rows = stacked.of(samples)
    np.testing.assert_array_equal(rows, np.vstack(values))
    assert stacked.offsets[-1] == len(rows) and all(s.vectors.base is rows.base for _, s in samples)


def test_thresholds_kept_from_a_lone_concept_on_equal_those_computed_afresh(tmp_path) -> None:
    """A store's first concept has no impostors while it is alone; once a second one comes it is measured again,
    and each later write (a new concept, more examples, a concept emptied) keeps the thresholds equal to a fresh
    computation, with predictions answered throughout."""
    from vecclf.classifier import ConceptClassifier
    from vecclf.classify.thresholds import StoreThresholds
    from vecclf.store import NewInput, Store

    rng = np.random.default_rng(4)
    d = 32
    centres = rng.normal(size=(4, d)).astype(np.float32)

    def examples(name: str, centre: np.ndarray, n: int = 8) -> list[NewInput]:
        v = centre + rng.normal(size=(n, d)).astype(np.float32) * 0.6
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        return [NewInput("text", "joint", f"{name}-{rng.random()}", v[i], concepts=(name,)) for i in range(n)]

    store = Store.create(tmp_path / "s", spec={"kind": "bench"}, identity={"kind": "t"}, spaces={"joint": d})
    clf = ConceptClassifier(store)
    writes = [
        lambda: store.add(examples("a", centres[0])),
        lambda: store.add([NewInput("text", "joint", "u", centres[2] / np.linalg.norm(centres[2]))]),  # no label
        lambda: store.add(examples("b", centres[1])),
        lambda: store.add(examples("c", (centres[0] + centres[1]) / 2)),
        lambda: store.add(examples("a", centres[0], 3)),
        lambda: store.delete(store.concept_member_ids("joint", "b").tolist()),
        lambda: store.add(examples("d", centres[3])),
    ]
    for write in writes:
        write()
        kept = clf.thresholds("joint")
        fresh = StoreThresholds(store).get("joint", store.stored_label_view("joint"), clf.predictor.unknown_quantile)
        assert kept == pytest.approx(fresh.values, abs=1e-6)
        (pred,) = clf.predict_vectors("joint", centres[:1] / np.linalg.norm(centres[0]), method="knn")
        assert pred.nearest == "a"
    clf.close()
