"""Batch jobs on a real local Ray runtime (2 CPUs, started and stopped here): embed to Parquet, import, predict."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import solid_image

from vecclf.cli import main
from vecclf.store import Store

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'vecclf[ray]')")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def runtime():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture()
def data(tmp_path, image_files):
    """The colour folders, a CSV of labelled texts and a broken image."""
    table = tmp_path / "texts.csv"
    table.write_text("text,label\na red apple,red\ngreen grass,green\nthe blue sea,blue\n")
    (tmp_path / "images" / "red" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return tmp_path / "images", table


def _vectors(path) -> dict[str, np.ndarray]:
    with Store.open(path, read_only=True) as st:
        ids, X = st.vectors("joint")
        return {r.source: X[i] for i, r in enumerate(st.get(ids.tolist()))}


def test_embed_to_parquet_then_import_matches_add(runtime, data, tmp_path, capsys) -> None:
    images, table = data
    code, out, _ = run(
        capsys, "embed", str(images), str(table), "--model", "tiny-clip", "--label-column", "label", "--folders",
        "--out", str(tmp_path / "shards"), "--json",
    )  # fmt: skip
    summary = json.loads(out)
    assert (
        code == 0
        and summary["rows"] == 15
        and [f["source"] for f in summary["failures"]] == [str(images / "red" / "broken.jpg")]
    )
    assert summary["actors"] == 1 and summary["threads"] == 2  # 2 CPUs: one actor, both threads
    schema = pq.read_schema(sorted((tmp_path / "shards").glob("*.parquet"))[0])
    assert schema.field("vector_joint").type.list_size == 64 and b"vecclf" in schema.metadata  # tiny-clip: 64-d
    imported = ["--store", str(tmp_path / "imported")]
    code, out, _ = run(capsys, "import", *imported, str(tmp_path / "shards"), "--json")
    assert code == 0 and len(json.loads(out)["added"]) == 15
    added = ["--store", str(tmp_path / "added")]
    assert run(capsys, "init", *added, "--model", "tiny-clip")[0] == 0
    assert run(capsys, "import", *added, str(images))[0] == 0
    assert run(capsys, "import", *added, str(table))[0] == 0
    ours, theirs = _vectors(tmp_path / "imported"), _vectors(tmp_path / "added")
    images_only = {s: v for s, v in ours.items() if not s.startswith(str(table))}
    assert images_only.keys() == {s for s in theirs if not s.startswith(str(table))}
    for source, v in images_only.items():
        assert np.abs(v - theirs[source]).max() < 1e-5
    query = tmp_path / "q.png"
    solid_image((200, 40, 40), seed=77).save(query)
    answers = []
    for store in (imported, added):
        code, out, _ = run(capsys, "predict", *store, str(query), "--json")
        answers.append([(p["concept"], round(p["score"], 4)) for p in json.loads(out)["predictions"]])
    assert answers[0] == answers[1] and answers[0][0][0] == "red"


def test_predict_on_ray_writes_the_same_answers_as_predict(runtime, data, tmp_path, capsys) -> None:
    images, _ = data
    store = ["--store", str(tmp_path / "st")]
    assert run(capsys, "init", *store, "--model", "tiny-clip")[0] == 0
    assert run(capsys, "import", *store, str(images))[0] == 0
    assert run(capsys, "train", *store)[0] == 0
    queries = tmp_path / "queries"
    queries.mkdir()
    for n, rgb in enumerate([(200, 40, 40), (40, 190, 50), (40, 50, 200), (90, 90, 90)]):
        solid_image(rgb, seed=60 + n).save(queries / f"{n}.png")
    code, out, _ = run(capsys, "embed", str(queries), "--model", "tiny-clip", "--out", str(tmp_path / "qv"))
    assert code == 0
    local = tmp_path / "local.parquet"
    assert run(capsys, "predict", *store, str(queries), "--out", str(local))[0] == 0
    for source in (str(tmp_path / "qv"), str(queries)):  # precomputed vectors, and files embedded on Ray
        out_dir = tmp_path / f"ray-{len(source)}"
        code, out, err = run(capsys, "predict", *store, source, "--ray", "--out", str(out_dir), "--json")
        assert code == 0 and json.loads(out)["rows"] == 4, err
        got = pq.read_table(out_dir).to_pylist()
        want = pq.read_table(local).to_pylist()
        assert set(got[0]) == set(want[0])  # the columns of predict --out
        key = {r["source"]: (r["concept"], round(r["score"], 4), r["method"]) for r in want}
        assert {r["source"]: (r["concept"], round(r["score"], 4), r["method"]) for r in got} == key


def test_ray_refusals_are_one_line(runtime, data, tmp_path, capsys) -> None:
    images, _ = data
    assert run(capsys, "embed", str(images), "--model", "tiny-clip", "--out", str(tmp_path / "v"))[0] == 0
    other = ["--store", str(tmp_path / "other")]
    assert run(capsys, "init", *other, "--model", "offline")[0] == 0
    code, _, err = run(capsys, "predict", *other, str(tmp_path / "v"), "--ray", "--out", str(tmp_path / "o"))
    assert code == 1 and "made by" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "predict", *other, str(images), "--ray")
    assert code == 2 and "--out" in err
    # a store that cannot answer any row is refused before Ray runs, as `predict` refuses it
    fresh = ["--store", str(tmp_path / "fresh")]
    assert run(capsys, "init", *fresh, "--model", "tiny-clip")[0] == 0
    for extra, says in [((), "no labelled examples"), (("--method", "head"), "no head trained")]:
        if extra:
            assert run(capsys, "import", *fresh, str(images))[0] == 0
        local = run(capsys, "predict", *fresh, str(images), *extra)
        code, _, err = run(
            capsys, "predict", *fresh, str(tmp_path / "v"), *extra, "--ray", "--out", str(tmp_path / "r")
        )
        assert (code, err) == local[::2] and says in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "r").exists()
    code, _, err = run(capsys, "embed", str(images), "--model", "tiny-clip", "--out", str(tmp_path / "v"))
    assert code == 2 and "not an empty folder" in err


def test_actors_use_their_share_of_the_cpus(runtime) -> None:
    """Ray starts workers with OMP_NUM_THREADS=1 and calls an actor from another thread than the one that built
    it; each batch still runs with the threads the actor was given (FAISS's setting is per thread)."""
    from vecclf.distributed import _Actor

    class Threads(_Actor):
        def __init__(self, threads: int) -> None:
            self.threads = threads

        def answer(self, batch):
            import faiss
            import torch

            n = len(batch["id"])
            return {"faiss": np.full(n, faiss.omp_get_max_threads()), "torch": np.full(n, torch.get_num_threads())}

    rows = (
        ray.data.range(4)
        .map_batches(Threads, fn_constructor_kwargs={"threads": 2}, batch_size=2, concurrency=1)
        .take_all()
    )
    assert [(r["faiss"], r["torch"]) for r in rows] == [(2, 2)] * 4


def test_predict_on_ray_answers_bad_vector_rows_as_failures(runtime, data, tmp_path, capsys) -> None:
    """Files written by another tool: a row without a vector, with NaN, of an unknown space, or marked failed is
    its own failure row; a file lacking a needed column is refused in one line before Ray runs anything."""
    import pyarrow as pa

    images, _ = data
    store = ["--store", str(tmp_path / "st")]
    assert run(capsys, "init", *store, "--model", "tiny-clip")[0] == 0
    assert run(capsys, "import", *store, str(images))[0] == 0
    assert run(capsys, "embed", str(images), "--model", "tiny-clip", "--out", str(tmp_path / "v"))[0] == 0
    table = pq.read_table(tmp_path / "v")
    table = table.filter(pa.compute.is_null(table.column("error")))
    rows = table.to_pylist()
    assert len(rows) >= 5
    rows[0]["vector_joint"] = None
    rows[1]["vector_joint"] = [float("nan")] * len(rows[1]["vector_joint"])
    rows[2]["space"] = "nope"
    rows[3]["error"] = "decoder gave up"
    hostile = tmp_path / "hostile.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), hostile)
    code, out, err = run(capsys, "predict", *store, str(hostile), "--ray", "--out", str(tmp_path / "o"), "--json")
    assert code == 0 and json.loads(out)["rows"] == len(rows), err
    got = {r["source"]: r for r in pq.read_table(tmp_path / "o").to_pylist()}
    reasons = [got[rows[i]["source"]]["error"] for i in range(4)]
    assert "no 64-d finite vector" in reasons[0] and "no 64-d finite vector" in reasons[1]
    assert "'nope' not in the store" in reasons[2] and reasons[3] == "decoder gave up"
    assert all(got[r["source"]]["error"] is None and got[r["source"]]["concept"] for r in rows[4:])
    # no error column (nothing failed): every row answered
    pq.write_table(table.drop_columns(["error"]), tmp_path / "lean.parquet")
    code, out, err = run(
        capsys, "predict", *store, str(tmp_path / "lean.parquet"), "--ray", "--out", str(tmp_path / "o2"), "--json"
    )
    assert code == 0 and json.loads(out)["rows"] == table.num_rows, err
    for column in ("space", "vector_joint"):
        pq.write_table(table.drop_columns([column]), tmp_path / f"no-{column}.parquet")
        code, _, err = run(
            capsys, "predict", *store, str(tmp_path / f"no-{column}.parquet"), "--ray", "--out", str(tmp_path / column)
        )
        assert code == 2 and f"lacks the column(s) {column}" in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / column).exists() or not any((tmp_path / column).iterdir())
