"""Store behaviour on real DuckDB files and real FAISS indexes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from vecclf.classifier import ConceptClassifier
from vecclf.errors import (
    ConflictError,
    InvalidInputError,
    ModelMismatchError,
    NotFoundError,
    ReadOnlyError,
    StoreLockedError,
    StoreNotFoundError,
    UnknownConceptError,
)
from vecclf.store import NewInput, Store

REPO = Path(__file__).resolve().parents[1]


def _run_py(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=REPO, timeout=300
    )


def test_round_trip_across_processes(clf, image_files) -> None:
    report = clf.add(image_files["red"][:3], ["red"])
    clf.add(image_files["blue"][:3], ["blue"])
    path = clf.store.path
    clf.close()
    # A second process opens the store, predicts and adds; a third sees everything.
    out = _run_py(
        f"""
        import json
        from vecclf.classifier import ConceptClassifier
        with ConceptClassifier.open({str(path)!r}) as c:
            p = c.predict([{str(image_files["red"][3])!r}])[0]
            r = c.add([{str(image_files["green"][0])!r}], ["green"])
            print(json.dumps({{"concept": p.concept, "new": r.ids, "info": c.info()}}))
        """
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["concept"] == "red"
    assert result["info"]["spaces"]["joint"]["vectors"] == 7
    with ConceptClassifier.open(path, read_only=True) as again:
        names = {c["name"]: c["positives"] for c in again.concepts()}
        assert names == {"blue": 3, "green": 1, "red": 3}
        rec = again.store.get(report.ids + result["new"])
        assert [r.concepts for r in rec] == [["red"]] * 3 + [["green"]]
        assert again.store.count() == 7


def test_add_predict_delete(clf, image_files) -> None:
    clf.add(image_files["red"][:3], ["red"])
    blue = clf.add(image_files["blue"][:3], ["blue"])
    assert clf.predict([image_files["blue"][3]])[0].concept == "blue"
    removed = clf.delete(blue.ids)
    assert removed == blue.ids
    assert clf.store.count() == 3
    # With blue gone, nothing can vote blue.
    pred = clf.predict([image_files["blue"][3]])[0]
    assert "blue" not in pred.scores
    with pytest.raises(NotFoundError):
        clf.delete([blue.ids[0]])
    with pytest.raises(NotFoundError):
        clf.delete([10**9])
    for bad in (2**64, 0, -3, "7", True):
        with pytest.raises(InvalidInputError):
            clf.delete([bad])


def test_new_concept_works_immediately(clf, image_files) -> None:
    clf.add(image_files["red"], ["red"])
    clf.add(image_files["blue"], ["blue"])
    before = clf.predict([image_files["green"][3]])[0]
    assert before.nearest in {"red", "blue"}
    clf.add(image_files["green"][:3], ["green"])  # no retraining step in between
    after = clf.predict([image_files["green"][3]])[0]
    assert after.concept == "green"
    assert after.neighbours[0]["concepts"] == ["green"]
    after.neighbours[0]["concepts"].append("changed by a caller")  # evidence is a copy, not the store's record
    assert clf.predict([image_files["green"][3]])[0].neighbours[0]["concepts"] == ["green"]
    assert clf.store.get([after.neighbours[0]["id"]])[0].concepts == ["green"]


def test_faiss_index_rebuilt_when_missing_or_stale(clf, image_files) -> None:
    ids = clf.add(image_files["red"], ["red"]).ids
    path = clf.store.path
    clf.close()
    index_file = path / "faiss-joint.index"
    assert index_file.is_file()
    good = index_file.read_bytes()
    # missing
    index_file.unlink()
    with Store.open(path) as s:
        assert s.count() == 4
    # torn (truncated)
    index_file.write_bytes(good[: len(good) // 2])
    with Store.open(path) as s:
        assert s.count() == 4
        _, found = s.search("joint", s.vectors("joint", ids[:1])[1], 1)
        assert found[0, 0] == ids[0]
    # stale: an older file restored after a later write
    with Store.open(path) as s:
        s.delete(ids[:1])
    index_file.write_bytes(good)
    with Store.open(path) as s:
        assert s.count() == 3
        _, found = s.search("joint", s.vectors("joint", ids[1:2])[1], 4)
        assert ids[0] not in found


def test_generation_counts_each_write_once_and_survives_reopen(clf, image_files) -> None:
    assert clf.store.generation("joint") == 0
    ids = clf.add(image_files["red"][:2], ["red"]).ids
    clf.store.label(ids, "warm")
    clf.delete(ids[:1])
    assert clf.store.generation("joint") == 3
    with pytest.raises(InvalidInputError):  # a failed write changes nothing
        clf.store.add([NewInput("text", "joint", "h", np.full(64, np.nan, np.float32))])
    assert clf.store.generation("joint") == 3
    path = clf.store.path
    clf.close()
    with Store.open(path, read_only=True) as s:
        assert s.generation("joint") == 3


def test_input_ids_ascend_and_are_never_reused_across_failures_reopens_and_kills(clf, monkeypatch) -> None:
    import duckdb

    from vecclf.store.catalogue import Catalogue

    rng = np.random.default_rng(0)

    def items(n: int, tag: str) -> list[NewInput]:
        v = rng.normal(size=(n, 64)).astype(np.float32)
        return [NewInput("text", "joint", f"{tag}{i}", v[i] / np.linalg.norm(v[i]), text=f"{tag}{i}") for i in range(n)]

    first = clf.store.add(items(3, "a"))
    second = clf.store.add(items(2, "b"))  # from the ids the first write took beyond its own
    assert second == [first[-1] + 1, first[-1] + 2]

    def broken(*args: object) -> None:
        raise duckdb.IOException("disk gone")

    monkeypatch.setattr(Catalogue, "insert_vectors", broken)
    with pytest.raises(Exception, match="disk gone"):  # fails inside the transaction, after taking ids
        clf.store.add(items(100, "c"))  # more than the ids taken: more are taken inside it
    monkeypatch.undo()
    third = clf.store.add(items(2, "d"))
    assert min(third) > second[-1]
    path = clf.store.path
    clf.close()  # unused ids go back: the next process goes on without a gap
    with Store.open(path) as store:
        fourth = store.add(items(1, "e"))
        assert fourth == [third[-1] + 1]
    killed = _run_py(
        f"""
        import os, signal
        import numpy as np
        from vecclf.store import NewInput, Store
        store = Store.open({str(path)!r})
        ids = store.add([NewInput("text", "joint", "k", np.ones(64, np.float32) / 8, text="k")])
        print(ids[0], flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # no close: the ids it took stay taken
        """
    )
    crashed = int(killed.stdout.split()[0])
    assert crashed == fourth[0] + 1
    with Store.open(path) as store:
        fifth = store.add(items(2, "f"))
        assert min(fifth) > crashed
        assert [r.text for r in store.get([*first, *second, *third, *fourth, crashed, *fifth])] == [
            "a0",
            "a1",
            "a2",
            "b0",
            "b1",
            "d0",
            "d1",
            "e0",
            "k",
            "f0",
            "f1",
        ]


def test_second_writer_fails_fast_naming_holder(clf) -> None:
    out = _run_py(
        f"""
        from vecclf.store import Store
        from vecclf.errors import StoreLockedError
        try:
            Store.open({str(clf.store.path)!r})
        except StoreLockedError as exc:
            print("LOCKED", exc)
        """
    )
    assert "LOCKED" in out.stdout, out.stderr
    import os

    assert f"pid {os.getpid()}" in out.stdout
    with pytest.raises(StoreLockedError):
        Store.open(clf.store.path)


def test_read_only_refuses_writes(clf, image_files) -> None:
    clf.add(image_files["red"][:1], ["red"])
    path = clf.store.path
    clf.close()
    with Store.open(path, read_only=True) as s:
        with pytest.raises(ReadOnlyError):
            s.delete([1])
        assert s.count() == 1


def test_missing_store_and_existing_store(tmp_path, tiny_embedder) -> None:
    with pytest.raises(StoreNotFoundError):
        Store.open(tmp_path / "nope")
    kw = {"spec": tiny_embedder.spec, "identity": tiny_embedder.identity, "spaces": tiny_embedder.spaces()}
    Store.create(tmp_path / "s", **kw).close()
    with pytest.raises(ConflictError):
        Store.create(tmp_path / "s", **kw)


def test_concept_rename_and_delete(clf, image_files) -> None:
    clf.add(image_files["red"][:2], ["red"], negatives=["blue"])
    clf.rename_concept("red", "crimson")
    assert [c["name"] for c in clf.concepts()] == ["blue", "crimson"]
    with pytest.raises(ConflictError):
        clf.rename_concept("crimson", "blue")
    with pytest.raises(UnknownConceptError):
        clf.rename_concept("red", "x")
    assert clf.delete_concept("blue")["labels_removed"] == 2
    assert [c["name"] for c in clf.concepts()] == ["crimson"]
    assert clf.store.count() == 2  # inputs stay


@pytest.mark.parametrize("bad", ["", "   ", "unknown", "a\x00b", "x" * 201])
def test_bad_concept_names_rejected(clf, image_files, bad) -> None:
    with pytest.raises(InvalidInputError):
        clf.add(image_files["red"][:1], [bad])
    assert clf.store.count() == 0


def test_concept_names_are_bound_parameters(clf, image_files) -> None:
    name = "x'); DROP TABLE inputs; --"
    clf.add(image_files["red"][:1], [name])
    assert [c["name"] for c in clf.concepts()] == [name]
    assert clf.search(texts=["q"], k=1, concept=name)[0][0].concepts == [name]


def test_store_refuses_other_embedders_vectors(clf, tmp_path) -> None:
    with pytest.raises(ModelMismatchError):
        clf.store.add([NewInput("text", "joint", "h", np.ones(7, np.float32))])
    from vecclf.embed.openclip import OpenCLIPEmbedder

    other = OpenCLIPEmbedder("vecclf-tiny-clip", None, seed=1)
    with pytest.raises(ModelMismatchError):
        ConceptClassifier(clf.store, other)


def test_embedding_cache_skips_reembedding(clf, image_files) -> None:
    first = clf.add(image_files["red"][:2], ["red"])
    assert (first.embedded, first.cached) == (2, 0)
    again = clf.add(image_files["red"][:2], ["red2"])
    assert (again.embedded, again.cached) == (0, 2)

    def cached_rows() -> int:
        return int(clf.info()["spaces"]["joint"]["cached_vectors"])

    assert cached_rows() == 0  # stored inputs are their own cache: no second copy of each vector on disk
    clf.delete(first.ids + again.ids)
    assert cached_rows() == 2  # one per distinct content
    third = clf.add(image_files["red"][:1], ["red"])  # cache outlives deleted inputs
    assert (third.embedded, third.cached) == (0, 1)
    assert np.allclose(clf.store.vector(third.ids[0])[1], clf.embed([image_files["red"][0]])[0].vector, atol=1e-5)


def test_search_concept_filter_applies_before_ranking(clf, image_files) -> None:
    clf.add(image_files["red"], ["red"])
    clf.add(image_files["blue"][:1], ["blue"])
    hits = clf.search([image_files["red"][0]], k=3, concept="blue")[0]
    assert [h.concepts for h in hits] == [["blue"]]  # filtered first, so the one blue input is found
    assert len(clf.search([image_files["red"][0]], k=50)[0]) == 5  # k beyond the store: no padding


def test_label_view_grows_in_place_and_matches_a_rebuild(clf) -> None:
    """Adds extend the cached labels (a new concept stays cheap in a big store); the result equals a full re-read."""
    from vecclf.classify.thresholds import StoreThresholds

    def full_recompute(quantile: float) -> dict[str, float]:
        return StoreThresholds(store).get("joint", store.stored_label_view("joint"), quantile).values

    rng = np.random.default_rng(0)

    def vec() -> np.ndarray:
        v = rng.normal(size=64).astype(np.float32)
        return v / np.linalg.norm(v)

    store = clf.store
    batches = [
        [NewInput("text", "joint", f"a{i}", vec(), concepts=("red",)) for i in range(6)],
        [NewInput("text", "joint", "n1", vec(), negatives=("green",)), NewInput("text", "joint", "u", vec())],
        [NewInput("text", "joint", f"g{i}", vec(), concepts=("green",)) for i in range(6)],  # had a negative
        [
            NewInput("video", "joint", "v", vec(), concepts=("blue", "red")),
            NewInput("frame", "joint", "f0", vec(), parent=0, frame_index=0),
            NewInput("frame", "joint", "f1", vec(), parent=0, frame_index=1),
        ],
        [NewInput("text", "joint", f"b{i}", vec(), concepts=("blue",), negatives=("red",)) for i in range(5)],
        [NewInput("text", "joint", f"p{i}", vec(), concepts=("purple",)) for i in range(5)],
    ]
    grown = 0
    older: list[tuple[object, np.ndarray]] = []
    asked: list[set[int]] = []  # ids whose vectors each threshold update read
    read_vectors = store.vectors

    def spy(space: str, ids: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        asked.append(set(ids or []))
        return read_vectors(space, ids)

    store.vectors = spy  # type: ignore[method-assign]
    clf.thresholds("joint")
    for batch in batches:
        before = store.label_view("joint")
        older.append((before, before.matrix.copy()))
        store.add(batch)
        kept = store.label_view("joint")  # extended in place, or re-read (then it is its own base)
        cached = kept if kept.base_generation < kept.generation else None
        # views handed out earlier share spare room with newer ones but never see their writes
        assert all(np.array_equal(view.matrix, copy) for view, copy in older)  # type: ignore[attr-defined]
        grown += cached is not None
        asked.clear()
        incremental = clf.thresholds("joint")  # caches carry on from the previous write
        touched = {n for it in batch for n in it.concepts + it.negatives}
        fresh = store.stored_label_view("joint")  # read afresh from the database
        if cached is not None:  # the same labels; new concepts sit after the old ones instead of sorted
            for field in ("ids", "roots", "label_roots", "frames"):
                assert np.array_equal(getattr(cached, field), getattr(fresh, field)), field
            assert sorted(cached.classes) == fresh.classes and cached.generation == fresh.generation
            columns = [cached.classes.index(c) for c in fresh.classes]
            assert np.array_equal(cached.matrix[:, columns], fresh.matrix)
            for j, c in enumerate(fresh.classes):
                assert np.array_equal(cached.members(cached.classes.index(c)), fresh.members(j)), c
            # only the concepts this write touched were re-read, not every concept changed since the last rebuild
            # (and a concept that was alone, measured then without impostors, once a second one comes)
            lone = set(before.classes) if len(before.classes) == 1 else set()
            members = {
                int(r)
                for c in touched | lone
                if c in fresh.classes
                for r in fresh.label_roots[fresh.matrix[:, fresh.classes.index(c)] > 0]
            }
            assert set().union(*asked) <= members
        assert incremental == pytest.approx(full_recompute(clf.unknown_quantile))
    assert grown == len(batches) - 1  # only the concept that already had a negative label forced a re-read
    clf.unknown_quantile = 0.2  # a new quantile recomputes every threshold from the cached similarities
    assert clf.thresholds("joint") == pytest.approx(full_recompute(0.2))


def test_remembered_records_match_the_catalogue(clf) -> None:
    """Records kept in memory (after an add or a read) equal the catalogue's, and later writes show through."""
    store = clf.store
    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(5, 64)).astype(np.float32)
    ids = store.add(
        [
            NewInput("video", "joint", "v", vecs[0], source="clip.mp4", concepts=("red", "blue"), negatives=("green",)),
            NewInput(
                "frame", "joint", "f0", vecs[1], source="clip.mp4", parent=0, frame_index=np.int64(0), timestamp_s=0
            ),
            NewInput("frame", "joint", "f1", vecs[2], source="clip.mp4", parent=0, frame_index=1, timestamp_s=1.5),
            NewInput("text", "joint", "t", vecs[3], text="a red thing", concepts=("red",)),
            NewInput("image", "joint", "i", vecs[4], source="x.png"),
        ]
    )
    remembered = store.get(ids)
    assert remembered[1].concepts == ["blue", "red"] and remembered[1].negatives == ["green"]  # from the video
    store.forget()
    assert store.get(ids) == remembered  # read back from DuckDB: the same
    assert json.dumps([r.to_dict() for r in remembered])  # plain JSON types, no numpy scalars
    remembered[0].concepts.append("changed by a caller")
    assert store.get([ids[0]])[0].concepts == ["blue", "red"]
    store.label([ids[0]], "purple")
    assert store.get([ids[2]])[0].concepts == ["blue", "purple", "red"]
    store.label([ids[3]], "red", positive=False)
    assert store.get([ids[3]])[0].negatives == ["red"]
    store.rename_concept("purple", "violet")
    assert "violet" in store.get([ids[0]])[0].concepts
    store.delete_concept("violet")
    assert store.get([ids[0]])[0].concepts == ["blue", "red"]
    store.delete([ids[0]])  # takes its frames
    with pytest.raises(NotFoundError):
        store.get([ids[1]])
    assert [r.id for r in store.get(ids[3:])] == ids[3:]


def test_vectors_read_from_memory_equal_the_database(clf) -> None:
    store = clf.store
    X = np.random.default_rng(2).normal(size=(30, 64)).astype(np.float32)
    ids = store.add([NewInput("text", "joint", f"h{i}", X[i]) for i in range(30)])
    assert store.count("joint") == 30  # index loaded: exact copies are in memory
    asked = [ids[7], ids[3], ids[3], ids[20]]
    got_ids, got = store.vectors("joint", asked)
    db_ids, db = store.stored_vectors("joint", asked)
    assert got_ids.tolist() == db_ids.tolist() == sorted({ids[3], ids[7], ids[20]})
    assert np.array_equal(got, db)
    store.delete([ids[7]])
    got_ids, got = store.vectors("joint", asked)  # one is gone: answered from the database
    assert got_ids.tolist() == [ids[3], ids[20]] and np.array_equal(got, store.stored_vectors("joint", asked)[1])


@pytest.mark.parametrize("index", ["flat", "ivf"])
def test_a_warmed_store_finds_the_same_duplicates(tmp_path, index) -> None:
    """Warming builds a content-hash filter for writes and IVF checks a write's vectors in two cells only:
    duplicates by hash (stored before or after warming, deleted and added again) and near-identical vectors
    are found as a store that was never warmed finds them."""
    rng = np.random.default_rng(5)
    d, n = 16, 10_500  # IVF trains from 10,000 vectors
    X = rng.normal(size=(n + 3, d)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    stores = []
    for name in ("cold", "warm"):
        store = Store.create(
            tmp_path / name, spec={"kind": "t"}, identity={"kind": "t"}, spaces={"joint": d}, index=index
        )
        store.add([NewInput("text", "joint", f"h{i}", X[i], concepts=(f"c{i % 3}",)) for i in range(n)])
        store.close()
        stores.append(Store.open(tmp_path / name))
    cold, warm = stores
    warm.warm()
    assert warm.info()["spaces"]["joint"]["index"] == index

    def both(items: list[NewInput]) -> list[int]:
        a, b = cold.write(items), warm.write(items)
        assert a == b
        return a.ids

    noise = rng.normal(size=d).astype(np.float32) * 1e-7  # similarity 1 - O(1e-7)
    ids = both(
        [
            NewInput("text", "joint", "h17", X[n], concepts=("again",)),  # stored before warming: by hash
            NewInput("text", "joint", "new-0", X[n + 1], concepts=("new",)),
            NewInput("text", "joint", "near-40", X[40] + noise, concepts=("near",)),  # a near-identical vector
        ]
    )
    assert ids[0] == 18 and ids[1] > n and ids[2] == 41  # ids count from 1
    assert both([NewInput("text", "joint", "new-0", X[n + 2])]) == [ids[1]]  # added after warming: by hash
    for store in stores:
        store.delete([ids[1]])
    again = both([NewInput("text", "joint", "new-0", X[n + 1])])  # deleted: stored anew
    assert again[0] not in (ids[1], -1)
    for store in stores:
        assert store.get([18])[0].concepts == ["again", "c2"]
        store.close()
