"""Index kinds: compressed and approximate FAISS indexes keep ids, deletes, filters and recall; auto switches."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from vecclf import _index
from vecclf.errors import InvalidInputError
from vecclf.store import NewInput, Store


def _clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(64, d)).astype(np.float32)
    X = centres[rng.integers(0, 64, n)] + rng.normal(size=(n, d)).astype(np.float32) * 0.8
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _fill(store: Store, X: np.ndarray) -> list[int]:
    ids: list[int] = []
    for start in range(0, len(X), 5000):
        rows = [NewInput("text", "joint", f"h{i}", X[i], concepts=(f"c{i % 3}",)) for i in range(start, min(start + 5000, len(X)))]
        ids += store.add(rows)
    return ids


@pytest.mark.parametrize("kind", ["fp16", "sq8", "ivf"])
def test_index_kinds_keep_ids_deletes_filters_and_recall(tmp_path, kind) -> None:
    d = 32
    everything = _clustered(12_100, d)
    X, Q = everything[:12_000], everything[12_000:]  # queries from the same distribution, not stored
    store = Store.create(tmp_path / "s", spec={"kind": "t"}, identity={"kind": "t"}, spaces={"joint": d}, index=kind)
    ids = np.array(_fill(store, X))
    store.flush()  # enough vectors to train: rebuilt as the chosen kind and saved
    assert store.info()["spaces"]["joint"]["index"] == kind
    exact = faiss.IndexFlatIP(d)
    exact.add(X)
    _, rows = exact.search(Q, 10)
    _, found = store.search("joint", Q, 10)
    assert _index.recall_at(ids[rows], found) >= (0.99 if kind == "fp16" else 0.9)
    members = ids[::97]  # a sparse subset: filtered search still finds its best members exactly
    _, got = store.search("joint", Q[:5], 3, restrict_to=members)
    want = np.argsort(-(Q[:5] @ X[::97].T), axis=1)[:, :3]
    assert np.array_equal(got, members[want]) or kind == "sq8"  # sq8 may reorder near-ties
    assert set(got.ravel()) <= set(members.tolist())
    store.delete([int(ids[0]), int(ids[1])])
    assert store.count() == len(X) - 2
    _, top = store.search("joint", X[:1], 5)
    assert int(ids[0]) not in top[0]
    store.close()
    with Store.open(tmp_path / "s") as again:  # the saved file loads as the same kind
        assert again.count() == len(X) - 2
        assert again.info()["spaces"]["joint"]["index"] == kind and again.index_kind == kind


def test_auto_switches_to_ivf_past_the_threshold(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(_index, "AUTO_IVF_THRESHOLD", 11_000)
    d = 16
    store = Store.create(tmp_path / "s", spec={"kind": "t"}, identity={"kind": "t"}, spaces={"joint": d})
    _fill(store, _clustered(10_500, d))
    store.flush()
    assert store.info()["spaces"]["joint"]["index"] == "flat"
    _fill(store, _clustered(1_000, d, seed=3))
    store.flush()
    assert store.info()["spaces"]["joint"]["index"] == "ivf" and store.count() == 11_500
    store.close()
    with pytest.raises(InvalidInputError, match="index must be one of"):
        Store.create(tmp_path / "t", spec={}, identity={}, spaces={"joint": 4}, index="hnsw")


def test_small_stores_stay_exact_until_they_can_train() -> None:
    assert _index.resolve("sq8", 10) == "flat" and _index.resolve("sq8", 5_000) == "sq8"
    assert _index.resolve("ivf", 500) == "flat" and _index.resolve("auto", 10**6) == "ivf"
    assert _index.resolve("fp16", 0) == "fp16"


@pytest.mark.parametrize("wrapped", [True, False])
def test_small_batch_search_matches_faiss(wrapped) -> None:
    X = _clustered(3_000, 24, seed=9)
    flat = faiss.IndexFlatIP(24)
    index: faiss.Index = faiss.IndexIDMap2(flat) if wrapped else flat
    if wrapped:
        index.add_with_ids(X, np.arange(3_000, dtype=np.int64) * 7 + 11)
    else:
        index.add(X)
    for nq in (1, 3, 8, 9):
        for k in (1, 10, 3_000):
            Q = _clustered(nq, 24, seed=nq)
            sims, ids = _index.search(index, Q, k)
            want_sims, want_ids = index.search(Q, k)
            assert ids.shape == want_ids.shape == (nq, k) and ids.dtype == np.int64
            np.testing.assert_allclose(sims, want_sims, rtol=1e-5, atol=1e-5)
            assert (ids[:, :1] == want_ids[:, :1]).all()
