"""Crash safety: SIGKILL a writer at random moments; every acknowledged write survives, FAISS agrees with DuckDB."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from vecclf.store import Store

CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from vecclf.store import NewInput, Store

    path, seed = sys.argv[1], int(sys.argv[2])
    store = Store.open(path)
    rng = np.random.default_rng(seed)
    i = 0
    while True:
        batch = []
        for j in range(1 + i % 3):
            v = rng.normal(size=64).astype(np.float32)
            batch.append(NewInput("text", "joint", f"{seed}-{i}-{j}", v / np.linalg.norm(v), text=f"t{i}",
                                  concepts=(f"c{i % 4}",)))
        ids = store.add(batch)
        if i == 0:  # the first write pays the imports (pyarrow may pull in pandas: 0.5 s); kills land after it
            print("ready", flush=True)
        print(" ".join(f"{k}:c{i % 4}" for k in ids), flush=True)  # acknowledged only once add() returned
        if i % 4 == 3:
            store.flush()  # FAISS saves: kills land during them too
        i += 1
    """
)


def test_sigkill_never_loses_acknowledged_writes(tmp_path: Path, tiny_embedder) -> None:
    _kill_rounds(tmp_path, tiny_embedder, rounds=30)


@pytest.mark.slow
def test_sigkill_soak(tmp_path: Path, tiny_embedder) -> None:
    """`pytest -m slow`: ten times the kills (about 5 minutes on 2 cores)."""
    _kill_rounds(tmp_path, tiny_embedder, rounds=300)


def _kill_rounds(tmp_path: Path, tiny_embedder, rounds: int) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "store"
    Store.create(path, spec=tiny_embedder.spec, identity=tiny_embedder.identity, spaces=tiny_embedder.spaces()).close()
    rng = np.random.default_rng(1234)
    acknowledged: dict[int, str] = {}
    kills = 0
    for round_ in range(rounds):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(round_)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready", child.stderr.read() if child.stderr else ""
        time.sleep(float(rng.uniform(0.0, 0.4)))
        os.kill(child.pid, signal.SIGKILL)
        out, _ = child.communicate(timeout=30)
        assert child.returncode == -signal.SIGKILL
        kills += 1
        for line in out.splitlines():  # complete lines only: a torn last line was never acknowledged
            if line.endswith(("0", "1", "2", "3")) and line.count(":") == len(line.split()):
                for pair in line.split():
                    k, concept = pair.split(":")
                    acknowledged[int(k)] = concept
        with Store.open(path) as store:
            records = store.get(sorted(acknowledged))  # raises if any acknowledged id is missing
            assert all(r.concepts == [acknowledged[r.id]] for r in records)
            ids, _ = store.vectors("joint")
            assert store.count("joint") == len(ids)  # FAISS (loaded or rebuilt) agrees with DuckDB
            if len(ids):
                _, found = store.search("joint", store.vectors("joint", [int(ids[-1])])[1], 1)
                assert found[0, 0] == ids[-1]
    print(f"SIGKILLs survived: {kills}, acknowledged writes checked: {len(acknowledged)}")
    assert kills == rounds and len(acknowledged) > rounds


def test_damaged_database_is_a_clear_error_never_wrong_answers(tmp_path: Path, tiny_embedder) -> None:
    from vecclf.errors import StoreCorruptError
    from vecclf.store import NewInput

    path = tmp_path / "store"
    rng = np.random.default_rng(0)
    with Store.create(
        path, spec=tiny_embedder.spec, identity=tiny_embedder.identity, spaces=tiny_embedder.spaces()
    ) as store:
        vecs = rng.normal(size=(50, 64)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        ids = store.add(
            [NewInput("text", "joint", f"h{i}", v, text=f"t{i}", concepts=("a",)) for i, v in enumerate(vecs)]
        )
    db = path / "store.duckdb"
    pristine = db.read_bytes()
    damages = {
        "truncated": pristine[: len(pristine) // 2],
        "empty": b"",
        "garbage": bytes(rng.integers(0, 256, len(pristine), dtype=np.uint8)),
        **{
            f"bitflip@{pos}": pristine[:pos] + bytes([pristine[pos] ^ 0xFF]) + pristine[pos + 1 :]
            for pos in rng.integers(0, len(pristine), 12).tolist()
        },
    }
    outcomes: dict[str, str] = {}
    for name, data in damages.items():
        db.write_bytes(data)
        (path / "store.duckdb.wal").unlink(missing_ok=True)
        try:
            with Store.open(path, read_only=True) as store:
                got_ids, got = store.vectors("joint")
                records = store.get(ids)
            # opened: the damage missed everything we read, so the answers must be exactly right
            assert list(got_ids) == ids and np.array_equal(got, vecs)
            assert all(r.concepts == ["a"] for r in records)
            outcomes[name] = "intact"
        except StoreCorruptError as exc:
            assert str(db) in str(exc)
            outcomes[name] = "error"
    print("damage outcomes:", outcomes)
    assert outcomes["truncated"] == outcomes["empty"] == outcomes["garbage"] == "error"
    assert set(outcomes.values()) <= {"intact", "error"}
