"""Parquet in and out of a store: export, import of an export or of precomputed vectors, refusals."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import solid_image

from vecclf.cli import main
from vecclf.errors import ModelMismatchError
from vecclf.exchange import import_parquet, read_header
from vecclf.store import Store


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def filled(tmp_path, capsys, image_files) -> list[str]:
    """A tiny-CLIP store: three colour folders, labelled texts, a set threshold, an empty concept, a head."""
    s = ["--store", str(tmp_path / "src")]
    assert run(capsys, "init", *s, "--model", "tiny-clip")[0] == 0
    assert run(capsys, "import", *s, str(tmp_path / "images"))[0] == 0
    for text, concept in [("a red apple", "red"), ("green grass", "green"), ("the blue sea", "blue")]:
        assert run(capsys, "add", *s, "--text", text, "--concept", concept)[0] == 0
    assert run(capsys, "concepts", *s, "add", "purple")[0] == 0
    assert run(capsys, "concepts", *s, "threshold", "red", "0.25")[0] == 0
    assert run(capsys, "train", *s)[0] == 0
    return s


def _answers(capsys, store: list[str], queries: list[str], method: str) -> list[tuple]:
    code, out, _ = run(capsys, "predict", *store, *queries, "--method", method, "--json")
    assert code == 0
    return [(p["concept"], round(p["score"], 5), p.get("stale")) for p in json.loads(out)["predictions"]]


def test_export_then_import_into_a_new_store_gives_the_same_answers(filled, tmp_path, capsys) -> None:
    queries = []
    for n, rgb in enumerate([(200, 40, 40), (40, 190, 50), (40, 50, 200)]):
        q = tmp_path / f"q{n}.png"
        solid_image(rgb, seed=50 + n).save(q)
        queries.append(str(q))
    code, out, _ = run(capsys, "export", *filled, "--out", str(tmp_path / "backup"), "--json")
    manifest = json.loads(out)
    assert code == 0 and manifest["rows"] == {"joint": 15}
    assert read_header(tmp_path / "backup")["identity"] == Store.open(tmp_path / "src", read_only=True).identity
    copy = ["--store", str(tmp_path / "copy")]
    code, out, err = run(capsys, "import", *copy, str(tmp_path / "backup"), "--json")
    assert code == 0 and len(json.loads(out)["added"]) == 15 and "created store" in err
    for method in ("knn", "head"):
        assert _answers(capsys, copy, queries, method) == _answers(capsys, filled, queries, method)
    code, out, _ = run(capsys, "concepts", *copy, "--json")
    names = {c["name"] for c in json.loads(out)["concepts"]}
    assert names == {"red", "green", "blue", "purple"}
    with Store.open(tmp_path / "copy", read_only=True) as st, Store.open(tmp_path / "src", read_only=True) as src:
        assert st.concept_thresholds() == {"red": 0.25}
        ids, X = st.vectors("joint")
        _, X0 = src.vectors("joint")
        assert np.array_equal(X, X0)
        texts = sorted(r.text for r in st.get(ids.tolist()) if r.text)
        assert texts == ["a red apple", "green grass", "the blue sea"]
    code, out, err = run(capsys, "import", *copy, str(tmp_path / "backup"), "--json")  # again: all duplicates
    assert code == 0 and len(json.loads(out)["duplicates"]) == 15 and not json.loads(out)["added"]


def test_vectors_of_another_model_are_refused_before_anything_is_stored(filled, tmp_path, capsys) -> None:
    assert run(capsys, "export", *filled, "--out", str(tmp_path / "backup"))[0] == 0
    other = ["--store", str(tmp_path / "other")]
    assert run(capsys, "init", *other, "--model", "offline")[0] == 0
    code, _, err = run(capsys, "import", *other, str(tmp_path / "backup"))
    assert code == 1 and "made by" in err and "Traceback" not in err
    with Store.open(tmp_path / "other", read_only=True) as st:
        assert st.count() == 0
        with pytest.raises(ModelMismatchError):
            import_parquet(st, tmp_path / "backup")


def test_bad_rows_fail_alone_and_foreign_files_are_refused(filled, tmp_path, capsys) -> None:
    assert run(capsys, "export", *filled, "--out", str(tmp_path / "backup"))[0] == 0
    (shard,) = sorted((tmp_path / "backup" / "rows").glob("*.parquet"))
    table = pq.read_table(shard)
    rows = table.to_pylist()
    rows[1]["vector_joint"] = [float("nan")] * len(rows[1]["vector_joint"])
    rows[2]["concepts"] = ["bad\u200bname"]
    rows[3]["content_hash"] = None
    rows[4]["vector_joint"] = None
    broken = tmp_path / "broken.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), broken)
    fresh = ["--store", str(tmp_path / "fresh")]
    code, out, err = run(capsys, "import", *fresh, str(broken), "--json")
    report = json.loads(out)
    assert code == 0 and len(report["added"]) == len(rows) - 4 and len(report["failures"]) == 4
    assert all(f["source"] for f in report["failures"])
    # the same rows written by another tool as variable-length lists, one of them short: only that one fails
    field = table.schema.field("vector_joint")
    loose = table.schema.set(table.schema.get_field_index("vector_joint"), field.with_type(pa.list_(pa.float64())))
    good = [dict(r) for r in table.to_pylist()]
    good[5]["vector_joint"] = good[5]["vector_joint"][:-1]
    pq.write_table(pa.Table.from_pylist(good, schema=loose), tmp_path / "loose.parquet")
    code, out, err = run(
        capsys, "import", "--store", str(tmp_path / "fresh2"), str(tmp_path / "loose.parquet"), "--json"
    )
    report = json.loads(out)
    assert code == 0 and [f["source"] for f in report["failures"]] == [good[5]["source"]], report["failures"]
    assert len(report["added"]) == len(good) - 1
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), plain)
    code, _, err = run(capsys, "import", *fresh, str(plain))
    assert code == 2 and "no vecclf header" in err
    code, _, err = run(capsys, "export", *fresh, "--out", str(tmp_path / "backup"))
    assert code == 2 and "not an empty folder" in err


def test_a_file_missing_a_needed_column_is_refused_whole_and_optional_ones_may_go(filled, tmp_path, capsys) -> None:
    assert run(capsys, "export", *filled, "--out", str(tmp_path / "backup"))[0] == 0
    (shard,) = sorted((tmp_path / "backup" / "rows").glob("*.parquet"))
    table = pq.read_table(shard)
    fresh = ["--store", str(tmp_path / "fresh")]
    for column in ("space", "content_hash", "vector_joint"):
        pq.write_table(table.drop_columns([column]), tmp_path / f"no-{column}.parquet")
        code, _, err = run(capsys, "import", *fresh, str(tmp_path / f"no-{column}.parquet"))
        assert code == 2 and f"lacks the column(s) {column}" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "fresh").exists()  # refused before a store was made for them
    assert run(capsys, "init", *fresh, "--model", "tiny-clip")[0] == 0
    code, _, err = run(capsys, "import", *fresh, str(tmp_path / "no-space.parquet"))
    assert code == 2 and "lacks the column(s) space" in err
    with Store.open(tmp_path / "fresh", read_only=True) as st:
        assert st.count() == 0  # and into a store, before a row was stored
    # columns a writer other than vecclf may leave out (no video frames, nothing failed): every row stored
    pq.write_table(table.drop_columns(["error", "parent_id", "frame_index"]), tmp_path / "lean.parquet")
    code, out, err = run(capsys, "import", *fresh, str(tmp_path / "lean.parquet"), "--json")
    assert code == 0 and len(json.loads(out)["added"]) == table.num_rows, err


def test_columns_of_another_type_are_refused_row_by_row_not_stored_as_something_else(filled, tmp_path, capsys) -> None:
    assert run(capsys, "export", *filled, "--out", str(tmp_path / "backup"))[0] == 0
    (shard,) = sorted((tmp_path / "backup" / "rows").glob("*.parquet"))
    table = pq.read_table(shard)
    n = table.num_rows
    swapped = {
        # a string where a list of names belongs would otherwise be read one letter per concept
        "concepts": pa.array(["abc"] * n),
        "metadata": pa.array(["{not json"] * n),
        "thumbnail": pa.array([123] * n),
        "kind": pa.array(["spreadsheet"] * n),
        "vector_joint": pa.array(["oops"] * n),
    }
    fresh = ["--store", str(tmp_path / "fresh")]
    assert run(capsys, "init", *fresh, "--model", "tiny-clip")[0] == 0
    for column, values in swapped.items():
        bad = table.set_column(table.schema.get_field_index(column), column, values)
        pq.write_table(bad.replace_schema_metadata(table.schema.metadata), tmp_path / f"{column}.parquet")
        code, out, err = run(capsys, "import", *fresh, str(tmp_path / f"{column}.parquet"), "--json")
        assert code == 2 and "Traceback" not in err, err
        reasons = {f["reason"].split(": ", 1)[-1] for f in json.loads(out)["failures"]}
        assert len(reasons) == 1 and len(json.loads(out)["failures"]) == n, reasons
        (reason,) = reasons
        assert column in reason or "kind" in reason or "finite floats" in reason, reason
    with Store.open(tmp_path / "fresh", read_only=True) as st:
        assert st.count() == 0 and st.concepts() == []
