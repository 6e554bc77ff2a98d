"""Readers run together, writers alone; predictions stay consistent while a writer adds and deletes."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import solid_image

from vecclf.store.locks import RWLock


def test_readers_overlap_and_writers_exclude() -> None:
    lock = RWLock()
    both_inside = threading.Barrier(2, timeout=5)
    events: list[str] = []

    def reader() -> None:
        with lock.read():
            both_inside.wait()  # only passes if two readers hold the lock at the same time
            with lock.read():  # re-entrant
                events.append("read")

    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in readers:
        t.start()
    for t in readers:
        t.join(10)
    assert events == ["read", "read"]

    holding = threading.Event()
    release = threading.Event()

    def long_reader() -> None:
        with lock.read():
            holding.set()
            release.wait(5)
            events.append("reader done")

    def writer() -> None:
        with lock.write():
            with lock.read():  # a writer may read
                events.append("writer")

    r = threading.Thread(target=long_reader)
    r.start()
    holding.wait(5)
    w = threading.Thread(target=writer)
    w.start()
    time.sleep(0.2)
    assert "writer" not in events  # blocked by the reader
    release.set()
    r.join(5)
    w.join(5)
    assert events[-2:] == ["reader done", "writer"]
    with lock.read(), pytest.raises(RuntimeError):
        with lock.write():
            pass


def test_eight_readers_and_a_writer(clf) -> None:
    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
    for name, rgb in colours.items():
        clf.add([solid_image(rgb, seed=s) for s in range(5)], [name])
    queries = {name: clf.embed([solid_image(rgb, seed=100)])[0].vector for name, rgb in colours.items()}
    errors: list[BaseException] = []
    stop = threading.Event()
    answers = [0]

    def reader(n: int) -> None:
        try:
            while not stop.is_set():
                name = list(colours)[n % 3]
                pred = clf.predict_vectors("joint", queries[name][None, :], k=5)[0]
                assert pred.nearest in colours and pred.neighbours
                assert all(nb["concepts"] for nb in pred.neighbours)  # evidence read in the same view
                hits = clf.search_vectors("joint", queries[name][None, :], k=4, concept=name)[0]
                assert hits and all(h.concepts == [name] for h in hits)
                answers[0] += 1
        except BaseException as exc:  # reported to the main thread
            errors.append(exc)

    def writer() -> None:
        try:
            for i in range(15):  # every third a new concept: the older concepts' evidence is extended meanwhile
                concept = f"new{i}" if i % 3 == 2 else "green"
                ids = clf.add([solid_image(colours["green"], seed=1000 + i)], [concept]).ids
                if i % 2:
                    clf.delete(ids)
        except BaseException as exc:
            errors.append(exc)
        finally:
            stop.set()

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(8)]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert answers[0] > 8
    assert clf.store.count() == 15 + 8  # 15 added, 7 deleted
    assert clf.store.count() == len(clf.store.vectors("joint")[0])  # FAISS agrees with DuckDB
    from vecclf.classify.thresholds import StoreThresholds

    fresh = StoreThresholds(clf.store).get(
        "joint", clf.store.stored_label_view("joint"), clf.predictor.unknown_quantile
    )
    assert clf.thresholds("joint") == pytest.approx(fresh.values, abs=1e-6)  # kept up under readers = afresh


def test_thresholds_computed_outside_a_read_never_deadlock_with_a_waiting_writer(clf) -> None:
    """Background warm-up computes thresholds from a view it read earlier, holding no read; a writer then waits
    for a reader, and that reader wants the thresholds too. Thresholds take the store's read lock before their
    own, so the warm-up waits for the writer instead of holding the lock the reader needs."""
    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
    for name, rgb in colours.items():
        clf.add([solid_image(rgb, seed=s) for s in range(4)], [name])
    clf.add([solid_image((200, 200, 30), seed=s) for s in range(4)], ["yellow"])  # thresholds now stale
    view = clf.store.label_view("joint")
    inside, go = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def run(fn) -> threading.Thread:  # type: ignore[no-untyped-def]
        def body() -> None:
            try:
                fn()
            except BaseException as exc:  # reported to the main thread
                errors.append(exc)

        thread = threading.Thread(target=body, daemon=True)
        thread.start()
        return thread

    def reader() -> None:
        with clf.store.reading():
            inside.set()
            go.wait(30)
            clf.thresholds("joint")

    threads = [run(reader)]
    assert inside.wait(30)
    threads.append(run(lambda: clf.add([solid_image((90, 90, 90), seed=7)], ["grey"])))  # waits for the reader
    time.sleep(0.3)
    threads.append(run(lambda: clf.predictor.threshold_state("joint", view)))  # as the warm-up does
    time.sleep(0.3)
    go.set()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads), "deadlocked"
    assert not errors, errors[:3]
    assert "grey" in clf.thresholds("joint")
