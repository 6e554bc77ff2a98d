"""Daily use: predicting from files into tables, listing inputs, managing concepts, held-out evaluation,
human output and argument handling, on the CLI and over HTTP."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import solid_image
from starlette.testclient import TestClient
from test_video import make_video

from vecclf.cli import main
from vecclf.server import create_app

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def store(tmp_path, capsys, image_files) -> list[str]:
    """A tiny-CLIP store with the three colour folders imported and a few labelled texts."""
    s = ["--store", str(tmp_path / "st")]
    assert run(capsys, "init", *s, "--model", "tiny-clip")[0] == 0
    assert run(capsys, "import", *s, str(image_files["red"][0].parent.parent))[0] == 0
    for text, concept in (("a ripe tomato", "red"), ("fresh grass", "green"), ("the open sea", "blue")):
        assert run(capsys, "add", *s, "--text", text, "--concept", concept)[0] == 0
    return s


def test_predict_reads_txt_tables_and_folders_and_streams_every_format(tmp_path, capsys, store, image_files) -> None:
    questions = tmp_path / "questions.txt"
    questions.write_bytes(b"a tomato\nsome grass\nbad \x00 line\n\nthe sea\n")
    table = tmp_path / "table.csv"
    table.write_text("\ufefftext,label\nred apple,red\n,blue\nblue whale,blue\n", encoding="utf-8")
    args = [str(questions), str(table), "--text-column", "text", "--text", "a lime"]
    for suffix in (".csv", ".jsonl", ".parquet"):
        out = tmp_path / f"predictions{suffix}"
        code, stdout, err = run(capsys, "predict", *store, *args, "--out", str(out), "--json")
        summary = json.loads(stdout)
        assert code == 0 and summary["answered"] == 6 and summary["rows"] == 8
        assert {f["source"].rsplit("/", 1)[-1] for f in summary["failures"]} == {"questions.txt:3", "table.csv:3"}
        assert "NUL" in err and "empty text" in err  # each failure named on stderr too
        if suffix == ".csv":
            rows = list(csv.DictReader(out.read_text(encoding="utf-8").splitlines()))
        elif suffix == ".jsonl":
            rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        else:
            rows = pq.read_table(out).to_pylist()
        answered = [r for r in rows if not r["error"]]
        assert len(rows) == 8 and len(answered) == 6
        assert {r["text"] for r in answered} == {
            "a tomato",
            "some grass",
            "the sea",
            "red apple",
            "blue whale",
            "a lime",
        }
        assert all(r["concept"] and r["method"] == "knn" and json.loads(r["scores"]) for r in answered)
        assert all(Path(r["source"].split(":")[0]).is_absolute() for r in answered if r["source"][0] != "<")
    code, stdout, _ = run(capsys, "predict", *store, str(image_files["red"][0].parent.parent), "--json")
    preds = json.loads(stdout)["predictions"]
    assert code == 0 and len(preds) == 12 and all(Path(p["source"]).is_absolute() for p in preds)
    assert all(p["concept"] == Path(p["source"]).parent.name for p in preds)  # each image answers its own folder
    code, stdout, _ = run(capsys, "predict", *store, "--text", "a ripe tomato")
    assert code == 0 and 'like "a ripe tomato"' in stdout  # a text answer shows the text it is closest to
    code, _, err = run(capsys, "predict", *store, "--out", str(tmp_path / "p.xlsx"), "--text", "x")
    assert code == 2 and ".parquet" in err


def test_nothing_answered_is_exit_2_but_some_failures_are_not(tmp_path, capsys, store, image_files) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    code, out, err = run(capsys, "predict", *store, str(broken), str(image_files["red"][1]), "--json")
    body = json.loads(out)
    assert code == 0 and len(body["predictions"]) == 1 and body["failures"][0]["source"].endswith("broken.jpg")
    assert "broken.jpg" in err
    code, out, err = run(capsys, "predict", *store, str(broken), "--json")
    assert code == 2 and json.loads(out)["predictions"] == [] and "nothing could be answered" in err
    for command in ("search", "verify"):
        extra = ["--concept", "red"] if command == "verify" else []
        code, out, _ = run(capsys, command, *store, str(broken), str(image_files["red"][1]), *extra, "--json")
        body = json.loads(out)
        assert code == 0 and len(body["failures"]) == 1 and len(body.get("results", body.get("verifications"))) == 1


def test_video_per_frame_timeline_and_search_collapse(tmp_path, capsys, store) -> None:
    video = make_video(tmp_path / "rgb.mp4", [COLOURS["red"], COLOURS["blue"]], seconds_each=2.0)
    assert run(capsys, "add", *store, str(video), "--concept", "clip")[0] == 0
    code, out, _ = run(capsys, "predict", *store, str(video), "--json")
    assert code == 0 and len(json.loads(out)["predictions"]) == 1  # pooled by default
    frames_csv = tmp_path / "frames.csv"
    code, _, _ = run(capsys, "predict", *store, str(video), "--per-frame", "--out", str(frames_csv))
    rows = list(csv.DictReader(frames_csv.read_text().splitlines()))
    times = [float(r["time_s"]) for r in rows]
    assert code == 0 and len(rows) == 4 and times == sorted(times) and times[0] == 0.0
    assert all(r["source"].startswith(str(video)) for r in rows)
    assert (rows[0]["concept"], rows[-1]["concept"]) == ("red", "blue")  # the timeline follows the colours
    code, out, _ = run(capsys, "search", *store, str(video), "--k", "20", "--json")
    hits = json.loads(out)["results"][0]
    video_hits = [h for h in hits if h["source"] == str(video.absolute())]
    assert code == 0 and len(video_hits) == 1  # the video and its frames: one hit
    code, out, _ = run(capsys, "search", *store, str(video), "--k", "20", "--no-collapse", "--json")
    assert len([h for h in json.loads(out)["results"][0] if h["source"] == str(video.absolute())]) >= 4


def test_inputs_listing_and_concept_deletion(capsys, store) -> None:
    code, out, _ = run(capsys, "inputs", *store, "--json")
    body = json.loads(out)
    assert code == 0 and body["total"] == 15 and [r["id"] for r in body["inputs"]] == list(range(1, 16))
    code, out, _ = run(capsys, "inputs", *store, "--kind", "text", "--json")
    assert [r["text"] for r in json.loads(out)["inputs"]] == ["a ripe tomato", "fresh grass", "the open sea"]
    code, out, _ = run(capsys, "inputs", *store, "--concept", "red", "--limit", "2", "--offset", "1", "--json")
    body = json.loads(out)
    assert body["total"] == 5 and len(body["inputs"]) == 2 and all("red" in r["concepts"] for r in body["inputs"])
    code, out, err = run(capsys, "inputs", *store, "--concept", "green")
    assert code == 0 and len(out.splitlines()) == 5 and "of 5" in err and "{" not in out
    code, _, err = run(capsys, "inputs", *store, "--concept", "purple")
    assert code != 0 and "purple" in err
    code, out, _ = run(capsys, "concepts", *store, "delete", "green")
    assert code == 0 and "5 input(s) now have no label" in out and "--with-inputs" in out
    code, out, _ = run(capsys, "concepts", *store, "delete", "blue", "--with-inputs", "--json")
    assert code == 0 and json.loads(out)["inputs_deleted"] == 5
    assert json.loads(run(capsys, "inputs", *store, "--json")[1])["total"] == 10


def test_eval_on_a_held_out_folder_and_table(tmp_path, capsys, store) -> None:
    test = tmp_path / "test"
    for name, rgb in {**COLOURS, "purple": (150, 30, 160)}.items():
        (test / name).mkdir(parents=True)
        for i in range(3):
            solid_image(rgb, seed=40 + i).save(test / name / f"{i}.png")
    code, out, _ = run(capsys, "eval", *store, "--test", str(test), "--out", str(tmp_path / "rep"), "--json")
    report = json.loads(out)
    assert code == 0 and report["protocol"] == "held-out test set" and report["examples"] == 12
    assert (
        report["out_of_scope"] == 3 and 0 <= report["unknown_rate"] <= 1 and set(report["per_concept"]) >= set(COLOURS)
    )
    assert (tmp_path / "rep" / "evaluation.json").exists()
    table = tmp_path / "t.jsonl"
    table.write_text('{"q": "a ripe tomato", "y": "red"}\n{"q": "the open sea", "y": "blue"}\n')
    code, out, _ = run(capsys, "eval", *store, "--test", str(table), "--text-column", "q", "--label-column", "y")
    assert code == 0 and "accuracy" in out
    code, _, err = run(capsys, "eval", *store, "--text-column", "q")
    assert code == 2 and "--test" in err


def test_human_output_options_anywhere_and_help(tmp_path, capsys, store) -> None:
    path = store[1]
    code, out, _ = run(capsys, "info", *store)
    assert code == 0 and out.startswith("store") and "{" not in out and "model      vecclf-tiny-clip" in out
    for argv in (
        ["--store", path, "concepts", "add", "one"],
        ["concepts", "--store", path, "add", "two"],
        ["concepts", "add", "three", "--store", path],
        ["concepts", "add", "--store", path, "--", "-dash"],
    ):
        code, out, err = run(capsys, *argv)
        assert code == 0 and out.startswith("created 1 concept(s)"), (argv, err)
    code, out, _ = run(capsys, "concepts", "--json", "--store", path)
    assert {"one", "two", "three", "-dash"} <= {c["name"] for c in json.loads(out)["concepts"]}
    code, out, _ = run(capsys, "concepts", *store, "rename", "one", "uno")
    assert code == 0 and out.strip() == "renamed one to uno"
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "(default: 10)" in out and "(default: auto)" in out
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", *store, "--k", "nan"])
    assert exit_info.value.code == 2 and "not an integer" in capsys.readouterr().err


def test_http_inputs_pages_and_concept_routes(tmp_path, capsys, store) -> None:
    app = create_app(store[1])
    with TestClient(app, base_url="http://localhost") as client:
        seen, cursor = [], 0
        while cursor is not None:
            page = client.get("/inputs", params={"limit": 4, "cursor": cursor}).json()
            assert page["total"] == 15
            seen += [r["id"] for r in page["inputs"]]
            cursor = page["next_cursor"]
        assert seen == list(range(1, 16))
        texts = client.get("/inputs", params={"kind": "text"}).json()["inputs"]
        one = client.get(f"/inputs/{texts[0]['id']}").json()
        assert one["text"] == "a ripe tomato" and one["concepts"] == ["red"]
        assert client.get("/inputs/999").status_code == 404
        assert client.get("/inputs", params={"limit": "0"}).status_code == 400
        assert client.get("/inputs", params={"cursor": "-1"}).status_code == 400
        r = client.patch("/concepts/red", json={"new_name": "crimson"})
        assert r.status_code == 200 and client.get(f"/inputs/{texts[0]['id']}").json()["concepts"] == ["crimson"]
        assert client.patch("/concepts/nope", json={"new_name": "x"}).status_code == 404
        r = client.delete("/concepts/green")
        assert r.status_code == 200 and r.json()["left_unlabelled"] == 5
        r = client.delete("/concepts/blue", params={"with_inputs": "true"})
        assert r.status_code == 200 and r.json()["inputs_deleted"] == 5
        assert client.get("/inputs").json()["total"] == 10
        r = client.post("/search", json={"texts": ["a ripe tomato", "nul \x00"], "k": 2})
        body = r.json()
        assert r.status_code == 200 and len(body["results"]) == 1 and body["failures"][0]["source"] == "<text 1>"
        assert client.post("/search", json={"texts": ["nul \x00"]}).status_code == 400


@pytest.mark.parametrize("n_classes", [3, 20])
def test_eval_reports_average_precision_and_readable_pr_curves(tmp_path, n_classes) -> None:
    """AP per concept as scikit-learn computes it; the PR figure has one panel, or one per concept when many."""
    import numpy as np
    from PIL import Image
    from sklearn.metrics import average_precision_score

    from vecclf.evaluate import PR_ONE_PANEL, evaluate_arrays, write_report

    rng = np.random.default_rng(n_classes)
    centres = rng.normal(size=(n_classes, 16))
    y = np.repeat(np.arange(n_classes), 8)
    X = centres[y] + rng.normal(scale=0.9, size=(len(y), 16))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    classes = [f"c{i}" for i in range(n_classes)]
    report = evaluate_arrays(X.astype(np.float32), np.eye(n_classes)[y], classes, method="knn", k=5)
    for c, name in enumerate(classes):
        want = average_precision_score(report["_truth"] == c, report["_scores"][:, c])
        assert report["per_concept"][name]["average_precision"] == pytest.approx(want, abs=1e-4)
    paths = write_report(report, tmp_path)
    with Image.open(paths["pr"]) as img:
        width, height = img.size
    if n_classes <= PR_ONE_PANEL:
        assert (width, height) == (770, 660)  # one 7x6 in panel at 110 dpi, AP in its legend
    else:
        assert width > 770 and height > 660  # a grid of panels, each titled with its concept and AP
