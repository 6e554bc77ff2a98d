"""The `vecclf` command: contracts, JSON output, and clear errors with non-zero exits."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vecclf.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_end_to_end(tmp_path, capsys, image_files) -> None:
    s = ["--store", str(tmp_path / "st")]
    assert run(capsys, "init", *s, "--model", "tiny-clip")[0] == 0
    code, out, _ = run(
        capsys, "import", *s, str(image_files["red"][0].parent.parent), "--limit-per-concept", "3", "--json"
    )
    assert code == 0 and len(json.loads(out)["added"]) == 9
    code, out, _ = run(capsys, "add", *s, "--text", "a red thing", "--concept", "red", "--json")
    assert code == 0 and json.loads(out)["added"][0]["kind"] == "text"
    code, out, _ = run(capsys, "predict", *s, str(image_files["blue"][3]), "--json")
    pred = json.loads(out)["predictions"][0]
    assert code == 0 and pred["concept"] == "blue" and pred["method"] == "knn" and pred["neighbours"]
    code, out, _ = run(capsys, "search", *s, "--text", "anything", "--k", "2", "--concept", "green", "--json")
    hits = json.loads(out)["results"][0]
    assert code == 0 and len(hits) == 2 and all(h["concepts"] == ["green"] for h in hits)
    code, out, _ = run(capsys, "concepts", *s, "--json")
    assert {c["name"]: c["positives"] for c in json.loads(out)["concepts"]} == {"blue": 3, "green": 3, "red": 4}
    assert run(capsys, "concepts", *s, "rename", "red", "crimson")[0] == 0
    code, out, _ = run(capsys, "delete", *s, "1", "2", "--json")
    assert code == 0 and json.loads(out)["deleted"] == [1, 2]
    code, out, _ = run(capsys, "info", *s, "--json")
    info = json.loads(out)
    assert info["spaces"]["joint"]["vectors"] == 8 and info["concepts"] == 3


def test_cli_errors_are_messages_not_tracebacks(tmp_path, capsys, image_files) -> None:
    s = ["--store", str(tmp_path / "st")]
    code, _, err = run(capsys, "predict", *s, "--text", "x")
    assert code == 1 and "no vecclf store" in err and "Traceback" not in err
    run(capsys, "init", *s, "--model", "tiny-clip")
    code, _, err = run(capsys, "init", *s, "--model", "tiny-clip")
    assert code == 1 and "already exists" in err
    code, _, err = run(capsys, "predict", *s, "--text", "x")
    assert code == 2 and "no labelled examples" in err
    code, _, err = run(capsys, "add", *s, str(image_files["red"][0]), "--concept", "unknown")
    assert code == 2 and "reserved" in err
    code, _, err = run(capsys, "add", *s, str(tmp_path / "nothing.jpg"), "--concept", "a")
    assert code == 2 and "no such file" in err
    code, _, err = run(capsys, "delete", *s, "12345")
    assert code == 1 and "no input with id 12345" in err
    code, _, err = run(capsys, "concepts", *s, "delete", "ghost")
    assert code == 1 and "unknown concept" in err
    with pytest.raises(SystemExit) as exc:
        main(["search", *s, "--text", "x", "--k", "0"])
    assert exc.value.code == 2


def test_default_model_fails_fast_and_cleanly_without_the_hub(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "VECCLF_DEBUG")}
    env["HF_HOME"] = str(tmp_path / "hf")  # an empty cache: the weights cannot be there
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # a hub that refuses at once: nothing is downloaded, network or not
    store = tmp_path / "st"
    out = subprocess.run(
        [sys.executable, "-m", "vecclf.cli", "init", "--store", str(store)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 1
    assert "laion2b_s34b_b79k" in out.stderr and "--checkpoint" in out.stderr and "--model offline" in out.stderr
    assert "Traceback" not in out.stderr and "ERROR:root" not in out.stderr
    assert not store.exists()  # nothing half-created


def test_offline_store_refuses_cross_modal_queries(tmp_path, capsys, image_files) -> None:
    s = ["--store", str(tmp_path / "st")]
    run(capsys, "init", *s, "--model", "offline")
    assert run(capsys, "add", *s, str(image_files["red"][0]), "--concept", "red")[0] == 0
    code, _, err = run(capsys, "predict", *s, "--text", "a red picture")
    assert code == 2 and "cannot compare across modalities" in err


def test_console_script_runs_in_a_real_process(tmp_path, image_files) -> None:
    exe = shutil.which("vecclf", path=str(Path(sys.executable).parent)) or shutil.which("vecclf")
    assert exe, "the vecclf console script is installed with the package"
    env = {**os.environ, "VECCLF_STORE": str(tmp_path / "env-store")}

    def sh(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=300)

    assert sh("init", "--model", "tiny-clip").returncode == 0
    assert sh("add", *map(str, image_files["green"][:2]), "--concept", "green").returncode == 0
    out = sh("predict", str(image_files["green"][3]), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["predictions"][0]["concept"] == "green"
    bad = sh("predict")
    assert bad.returncode == 2 and "give PATH" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_open_set_thresholds_and_duplicates(tmp_path, capsys, image_files) -> None:
    s = ["--store", str(tmp_path / "st")]
    run(capsys, "init", *s, "--model", "tiny-clip")
    for name in ("red", "green", "blue"):
        assert run(capsys, "add", *s, *map(str, image_files[name][:3]), "--concept", name)[0] == 0
    code, out, err = run(capsys, "add", *s, str(image_files["red"][0]), "--concept", "crimson", "--json")
    report = json.loads(out)
    assert code == 0 and report["added"] == [] and report["duplicates"][0]["id"] == 1
    assert "already stored" in err and "--keep-duplicates" in err
    code, out, _ = run(capsys, "add", *s, str(image_files["red"][0]), "--concept", "red", "--keep-duplicates", "--json")
    assert code == 0 and len(json.loads(out)["added"]) == 1
    code, out, _ = run(capsys, "concepts", *s)
    assert code == 0 and "threshold" in out.splitlines()[0]  # human lines, each with its threshold
    assert run(capsys, "concepts", *s, "threshold", "red", "0.9999999")[0] == 0
    code, out, _ = run(capsys, "concepts", *s, "--json")
    red = next(c for c in json.loads(out)["concepts"] if c["name"] == "red")
    assert red["threshold_set"] == 0.9999999 and red["thresholds"]["joint"] == pytest.approx(0.9999999)
    query = str(image_files["red"][3])
    code, out, _ = run(capsys, "predict", *s, query, "--method", "knn", "--json")
    pred = json.loads(out)["predictions"][0]
    assert pred["concept"] == "unknown" and pred["rejected_by"] == "nearest-example" and pred["nearest"] == "red"
    code, out, _ = run(capsys, "predict", *s, query, "--method", "knn")
    assert "below threshold" in out
    code, out, _ = run(capsys, "verify", *s, query, "--concept", "red", "--json")
    assert code == 3 and json.loads(out)["verifications"][0]["calibration"]["method"] == "set"
    assert run(capsys, "concepts", *s, "threshold", "red", "auto")[0] == 0
    code, out, _ = run(capsys, "predict", *s, query, "--unknown-quantile", "0", "--json")
    assert json.loads(out)["predictions"][0]["concept"] == "red"
    for bad in (("threshold", "red", "2"), ("threshold", "red", "high"), ("threshold", "red")):
        assert run(capsys, "concepts", *s, *bad)[0] == 2
    with pytest.raises(SystemExit):
        main(["predict", *s, query, "--unknown-quantile", "0.9"])
    code, out, _ = run(capsys, "eval", *s, "--apply", "--json")
    applied = json.loads(out)["applied"]
    assert code == 0 and set(applied) <= {"red", "green", "blue", "crimson"} and applied
    code, out, _ = run(capsys, "concepts", *s, "--json")
    chosen = {c["name"]: c["threshold_set"] for c in json.loads(out)["concepts"]}
    assert all(chosen[name] == pytest.approx(value) for name, value in applied.items())
