"""Index kinds: compressed and approximate FAISS indexes keep ids, deletes, filters and recall; auto switches."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from vecclf.errors import InvalidInputError
from vecclf.store import NewInput, Store, vectors
from vecclf.store import index as _index
from vecclf.store.vectors import SpaceIndex


def _clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(64, d)).astype(np.float32)
    X = centres[rng.integers(0, 64, n)] + rng.normal(size=(n, d)).astype(np.float32) * 0.8
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _fill(store: Store, X: np.ndarray, tag: str = "h") -> list[int]:
    ids: list[int] = []
    for start in range(0, len(X), 5000):
        rows = [
            NewInput("text", "joint", f"{tag}{i}", X[i], concepts=(f"c{i % 3}",))
            for i in range(start, min(start + 5000, len(X)))
        ]
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


def test_ivf_store_finds_every_example_of_a_new_concept(tmp_path, monkeypatch) -> None:
    """Vectors added after the IVF cells were trained are searched exactly too: a concept unlike anything
    stored scatters over cells a query near it does not probe, yet its examples are all found."""
    d = 32
    X = _clustered(12_000, d)
    store = Store.create(tmp_path / "s", spec={"kind": "t"}, identity={"kind": "t"}, spaces={"joint": d}, index="ivf")
    _fill(store, X)
    store.flush()  # IVF cells trained on these
    assert store.info()["spaces"]["joint"]["untrained_vectors"] == 0
    rng = np.random.default_rng(5)
    missed_by_cells, rounds = 0, 20
    for r in range(rounds):  # new concepts in directions the cells never saw
        centre = rng.normal(size=d).astype(np.float32)
        new = centre + rng.normal(size=(11, d)).astype(np.float32) * 0.3
        new /= np.linalg.norm(new, axis=1, keepdims=True)
        ids = store.add([NewInput("text", "joint", f"n{r}-{i}", new[i], concepts=(f"new{r}",)) for i in range(10)])
        _, found = store.search("joint", new[10:], 10)
        assert sorted(found[0].tolist()) == ids  # exactly the new concept's ten examples
        _, by_cells = store.space_index("joint").index.search(new[10:], 10)  # the cells alone
        missed_by_cells += len(set(ids) - set(by_cells[0].tolist()))
    assert missed_by_cells > 0  # the cells alone do miss some: the exact pass is what finds them
    store.delete(ids[:2])
    _, found = store.search("joint", new[10:], 10)
    assert not set(ids[:2]) & set(found[0].tolist())
    store.close()
    with Store.open(tmp_path / "s") as again:  # the untrained vectors are found again after reopening
        assert again.count() == 12_000 + rounds * 10 - 2  # (loads the index)
        assert again.info()["spaces"]["joint"]["untrained_vectors"] == rounds * 10 - 2
        _, found = again.search("joint", new[10:], 8)
        assert sorted(found[0].tolist()) == ids[2:]
        monkeypatch.setattr(_index, "FRESH_MAX", 100)
        again.add([NewInput("text", "joint", "one more", new[0])])
        again.flush()  # past FRESH_MAX: the cells are retrained on everything
        assert again.info()["spaces"]["joint"]["untrained_vectors"] == 0
        assert again.info()["spaces"]["joint"]["index"] == "ivf" and again.count() == 12_000 + rounds * 10 - 1
        _, found = again.search("joint", new[10:], 8)
        assert len(set(found[0].tolist()) & set(ids[2:])) >= 7  # the retrained cells cover the new concept


def test_ivf_looks_up_an_adds_cells_once_and_answers_as_faiss_does(monkeypatch) -> None:
    """An add's vectors are looked up by its duplicate check, the add and their impostors' search: the cells
    they fall in are found once (each look reads every centroid) and every answer is FAISS's own."""
    d = 32
    X = _clustered(12_000, d)
    ids = np.arange(12_000, dtype=np.int64) + 1
    index = _index.build("ivf", d, ids, X)
    plain = faiss.clone_index(index)  # the same cells, searched and added to by FAISS alone
    held = SpaceIndex(index, d, 12_000, _index.build("flat", d, ids[:0], X[:0]))
    looked: list[int] = []
    search = _index.search
    centroids = faiss.extract_index_ivf(index).nlist

    def counted(ix, q, k):  # lookups of the cells, not searches of the fresh tier
        if ix.ntotal == centroids:
            looked.append(len(q))
        return search(ix, q, k)

    monkeypatch.setattr(_index, "search", counted)
    new, more = _clustered(10, d, seed=8), _clustered(3, d, seed=9)
    new_ids = np.arange(20_001, 20_011, dtype=np.int64)
    copies = held.nearest_copies(new)
    params = faiss.SearchParametersIVF(nprobe=2)
    np.testing.assert_array_equal(copies[1], plain.search(new, 1, params=params)[1])  # the two nearest cells
    held.add(new_ids, new)
    plain.add_with_ids(new, new_ids)
    for i in range(plain.nlist):  # each vector went to the cell FAISS puts it in
        assert plain.invlists.list_size(i) == index.invlists.list_size(i)
    sims, found = held.search(new, 16)
    want = plain.search(new, 16)
    np.testing.assert_array_equal(found, want[1])
    np.testing.assert_allclose(sims, want[0], rtol=1e-6)
    assert looked == [10]  # the ten were assigned to cells once, for the three uses
    held.search(np.vstack([new[:2], more]), 5)  # two remembered, three new
    assert looked == [10, 3]
    monkeypatch.setattr(vectors, "REMEMBERED_CELLS", 4)
    held.search(_clustered(4, d, seed=10), 5)
    assert len(held._cells) == 4  # the oldest forgotten
    found = held.search(_clustered(6, d, seed=11), 5)[1]  # more than are remembered: FAISS's own search
    np.testing.assert_array_equal(found, plain.search(_clustered(6, d, seed=11), 5)[1])
    assert len(held._cells) == 4


def test_auto_switches_to_ivf_past_the_threshold(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(_index, "AUTO_IVF_THRESHOLD", 11_000)
    d = 16
    store = Store.create(tmp_path / "s", spec={"kind": "t"}, identity={"kind": "t"}, spaces={"joint": d})
    _fill(store, _clustered(10_500, d))
    store.flush()
    assert store.info()["spaces"]["joint"]["index"] == "flat"
    _fill(store, _clustered(1_000, d, seed=3), tag="more")
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


def test_merge_top_k_counts_shared_ids_once() -> None:
    first = (np.array([[0.9, 0.5, -np.inf]], np.float32), np.array([[1, 2, -1]]))
    second = (np.array([[0.9, 0.7]], np.float32), np.array([[1, 3]]))
    sims, ids = _index.merge_top_k(first, second, 3)
    assert ids.tolist() == [[1, 3, 2]] and sims[0].tolist() == pytest.approx([0.9, 0.7, 0.5])
    sims, ids = _index.merge_top_k(first, (second[0][:, :1], second[1][:, :1]), 3)
    assert ids.tolist() == [[1, 2, -1]] and sims[0, 2] == -np.inf  # padding stays padding


@pytest.mark.parametrize("scores_bytes", [16 << 20, 40_000])  # one block of columns, or many (bounds carried over)
@pytest.mark.parametrize("n", [3_000, 10_240, 20_000 + 77])  # 3,000: fewer blocks than k for k = 16
def test_exact_top_k_by_block_bounds_equals_a_full_sort(n, scores_bytes, monkeypatch) -> None:
    monkeypatch.setattr(_index, "_SCORES_BYTES", scores_bytes)
    rng = np.random.default_rng(n)
    X = _clustered(n, 16, seed=3)
    X[n // 2 : n // 2 + 40] = X[5]  # many equal scores, some in the tail past the last whole block
    X[-3:] = X[7]
    ids = np.arange(n, dtype=np.int64) * 3 + 1
    for nq in (1, 2, 8, 300):
        Q = np.vstack([X[[5, 7]], rng.normal(size=(nq, 16)).astype(np.float32)])[:nq]
        for k in (1, 10, 16):
            sims, found = _index.exact_top_k(Q, X, ids, k)
            scores = _index._scores(Q, X)  # the same products (one at a time for a few queries)
            np.testing.assert_allclose(scores, Q @ X.T, atol=1e-5)
            want = -np.sort(-scores, axis=1)[:, :k]
            np.testing.assert_array_equal(sims, want)  # the same k best scores, best first
            for row in range(nq):
                assert len(set(found[row].tolist())) == k
                np.testing.assert_array_equal(scores[row, (found[row] - 1) // 3], sims[row])


def test_exact_top_k_survives_nan_and_all_equal_scores() -> None:
    X = np.ones((12_000, 4), np.float32) / 2  # every score the same: no block bound narrows anything
    ids = np.arange(12_000, dtype=np.int64)
    sims, found = _index.exact_top_k(X[:1], X, ids, 10)
    assert (sims == 1).all() and len(set(found[0].tolist())) == 10
    sims, found = _index.exact_top_k(np.full((1, 4), np.nan, np.float32), X, ids, 10)
    assert sims.shape == found.shape == (1, 10) and (found >= 0).all()
    # a batch: an all-NaN query and one whose scores are NaN for a few stored vectors answer beside good ones
    Y = _clustered(12_000, 4, seed=2)
    Y[100:103] = np.nan
    Q = np.vstack([Y[5:6], np.full((1, 4), np.nan, np.float32), Y[7:8]])
    sims, found = _index.exact_top_k(Q, Y, ids, 10)
    assert (found >= 0).all() and np.isnan(sims[1]).all()
    for row in (0, 2):
        scores = Y @ Q[row]
        want = -np.sort(-np.where(np.isnan(scores), -np.inf, scores))[:10]
        np.testing.assert_allclose(sims[row], want, atol=1e-6)  # NaN scores rank last, finite ones ranked


def test_exact_top_k_over_fewer_blocks_than_k_sorts_few_candidates(monkeypatch) -> None:
    """Fewer stored vectors than k blocks (IVF centroids, a small store searched for 16 neighbours): the
    chunk's own k-th best score bounds it, so only about k candidates per query are sorted, not every score."""
    kept: list[int] = []
    best = _index._best
    monkeypatch.setattr(
        _index, "_best", lambda found, floor, m: kept.append(sum(len(f[0]) for f in found)) or best(found, floor, m)
    )
    X = _clustered(4_000, 32, seed=6)
    Q = _clustered(10, 32, seed=7)
    sims, _ = _index.exact_top_k(Q, X, np.arange(4_000, dtype=np.int64), 16)
    np.testing.assert_array_equal(sims, -np.sort(-(Q @ X.T), axis=1)[:, :16])
    assert kept and max(kept) <= 2 * 10 * 16


@pytest.mark.parametrize("way", [None, "faiss", "ours"])
def test_a_flat_batch_answers_the_same_whichever_search_runs_it(way, monkeypatch) -> None:
    X = _clustered(3_000, 32, seed=4)
    ids = np.arange(3_000, dtype=np.int64) * 5 + 2
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(32))
    index.add_with_ids(X, ids)
    Q = _clustered(40, 32, seed=5)
    size = (Q.shape[0].bit_length(), index.ntotal.bit_length())
    monkeypatch.setattr(_index, "_FASTER", {} if way is None else {size: way})
    sims, found = _index.search(index, Q, 7)
    want_sims, want_ids = index.search(Q, 7)
    np.testing.assert_allclose(sims, want_sims, atol=1e-5)
    assert (found == want_ids).mean() > 0.99  # the same neighbours (an exact tie may swap two)
    assert _index.faster_batch_search() == {"32-63 queries x 2,048-4,095 stored": way or _index._FASTER[size]}


def test_exact_top_k_of_a_batch_over_equal_scores_stays_small(monkeypatch) -> None:
    """Every score equal (copies of one vector): each block keeps all its scores as candidates, so the search
    holds only each query's best so far between blocks; the lowest positions win."""
    monkeypatch.setattr(_index, "_SCORES_BYTES", 64_000)  # many blocks of columns
    kept: list[int] = []
    best = _index._best
    monkeypatch.setattr(
        _index, "_best", lambda found, floor, m: kept.append(sum(len(f[0]) for f in found)) or best(found, floor, m)
    )
    X = np.ones((40_000, 4), np.float32) / 2
    ids = np.arange(40_000, dtype=np.int64) + 100
    Q = np.vstack([X[:50], np.full((2, 4), np.nan, np.float32)])
    sims, found = _index.exact_top_k(Q, X, ids, 10)
    assert (sims[:50] == 1).all() and (found[:50] == np.arange(100, 110)).all()
    assert (found[50:] >= 100).all() and np.isnan(sims[50:]).all()  # NaN queries still answer, NaN last
    assert len(kept) > 2 and max(kept) < 52 * 40_000 // 4  # held the best so far, never every score
