"""The README's examples run as written: its Python blocks, and its shell blocks in a folder holding the files they name."""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import shared_path, solid_image
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(section: str) -> list[str]:
    """The ```python blocks of one ``## section`` of the README."""
    text = README.read_text()
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start : end if end > 0 else None], flags=re.S)


@pytest.mark.parametrize("n", [0, 1])
def test_python_section_examples_run(tmp_path: Path, n: int) -> None:
    block = python_blocks("Python")[n]
    for name, rgb in (("alice", (220, 30, 30)), ("bob", (30, 40, 220))):
        for i in (1, 2, 3):
            solid_image(rgb, seed=i).save(tmp_path / f"{name}{i}.jpg")
    solid_image((210, 40, 40), seed=9).save(tmp_path / "who.jpg")
    with (tmp_path / "questions.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows([["what is the exchange rate", "exchange_rate"], ["card not arrived", "card_arrival"]])
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        [sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env
    )
    assert run.returncode == 0, run.stderr[-3000:]
    if n == 0:
        first, second = run.stdout.splitlines()[:2]
        assert first.split()[0] == "alice"  # the reddish query is nearest alice's examples
        assert second.startswith("2 added;")
    else:
        knn_score, head_score = (float(line) for line in run.stdout.split())
        assert knn_score > 0.95 and head_score > 0.9


def test_every_command_and_option_the_readme_shows_exists() -> None:
    """The shell examples name only commands and options the parser has (documentation that cannot drift)."""
    from vecclf.cli.parser import commands

    parsers = commands()
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    seen = 0
    for block in blocks:
        for line in block.splitlines():
            words = line.split("#")[0].split()
            if len(words) < 2 or words[0] != "vecclf" or words[1].startswith("-"):
                continue
            assert words[1] in parsers, line
            known = {opt for action in parsers[words[1]]._actions for opt in action.option_strings}
            for word in words[2:]:
                option = word.strip("[]").split("=")[0]
                if option.startswith("--"):
                    assert option in known, f"{line!r}: {option} is not an option of vecclf {words[1]}"
                    seen += 1
    assert seen > 40


NOT_RUN = re.compile(r"<!-- not run by tests: (.+?) -->\s*$")


def bash_blocks() -> list[tuple[str, str, str | None]]:
    """Every ```bash block of the README as (section, code, why it is not run or None)."""
    blocks: list[tuple[str, str, str | None]] = []
    section, lines = "", README.read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("## "):
            section = lines[i][3:]
        if lines[i] == "```bash":
            end = lines.index("```", i + 1)
            marker = NOT_RUN.search(lines[i - 1]) if i else None
            blocks.append((section, "\n".join(lines[i + 1 : end]) + "\n", marker.group(1) if marker else None))
            i = end
        i += 1
    return blocks


RUN = {section: code for section, code, why in bash_blocks() if why is None}


def test_every_bash_block_is_run_or_says_why_not() -> None:
    blocks = bash_blocks()
    assert all(why.strip() for _, _, why in blocks if why is not None)
    assert len(RUN) == sum(why is None for _, _, why in blocks)  # one runnable block per section
    assert set(RUN) == {"Quick start", "HTTP", "Face verification", "Beyond one machine"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files the README's shell examples name, in one folder."""
    tmp = tmp_path_factory.mktemp("readme")
    for concept, rgb in (("cat", (220, 30, 30)), ("dog", (30, 40, 220))):
        (tmp / "photos" / concept).mkdir(parents=True)
        for i in range(6):
            solid_image(rgb, seed=i).save(tmp / "photos" / concept / f"{concept}{i}.jpg")
    solid_image((210, 40, 40), seed=9).save(tmp / "new.jpg")
    (tmp / "new_photos").mkdir()
    solid_image((40, 40, 210), seed=11).save(tmp / "new_photos" / "a.jpg")
    solid_image((215, 35, 30), seed=12).save(tmp / "new_photos" / "b.jpg")
    rows = {
        "exchange_rate": ["what is the exchange rate", "how much is a euro in dollars", "currency conversion rate"],
        "card_arrival": ["my card has not arrived", "when will my new card come", "card still not delivered"],
        "top_up": ["how do I top up my account", "add money to my balance", "top up with a bank transfer"],
    }
    with (tmp / "train.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows([text, label] for label, texts in rows.items() for text in texts)
    (tmp / "questions.txt").write_text(
        "is my card on its way\nwhat rate do you give for yen\nput money in my account\n"
    )
    return tmp


def run_block(section: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """One README block in bash with ``-e`` (any failing command fails it), the venv's ``vecclf`` on PATH."""
    code = RUN[section]
    if section == "HTTP":  # the block's port, made a free one so that a busy 8000 cannot fail the test
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            code = code.replace(":8000", f":{s.getsockname()[1]}").replace("8000", str(s.getsockname()[1]))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("VECCLF_STORE", None)
    env.pop("VECCLF_TOKEN", None)
    cleanup = "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"  # a server the block started dies with it
    run = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", cleanup + code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert run.returncode == 0, f"{section}: exit {run.returncode}\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
    return run


def test_quick_start_runs_as_written(folder: Path) -> None:
    out = run_block("Quick start", folder).stdout
    assert (folder / "pets").is_dir()
    answers = {
        line.split("\t")[0]: line.split("\t")[1] for line in out.splitlines() if "\t" in line and " via " in line
    }
    assert answers[str(folder / "new.jpg")] == "cat", out  # the reddish query beside the reddish examples
    assert answers["<text 0>"] == "lost_card", out
    with (folder / "answers.csv").open() as fh:
        answers = list(csv.DictReader(fh))
    assert len(answers) == 3 and all(a["method"] == "head" for a in answers)


def test_http_example_runs_as_written(folder: Path) -> None:
    if not (folder / "pets").is_dir():
        run_block("Quick start", folder)
    out = run_block("HTTP", folder).stdout
    text, docs, decoder = "".join(ln for ln in out.splitlines() if not ln.startswith("vecclf:")), [], json.JSONDecoder()
    while text.strip():  # curl prints the bodies back to back
        doc, end = decoder.raw_decode(text.strip())
        docs.append(doc)
        text = text.strip()[end:]
    health, predict, added = docs
    assert health["status"] == "ok" and predict["predictions"][0]["concept"] == "lost_card"
    assert len(added["added"]) + len(added["duplicates"]) == 1


def test_face_verification_runs_as_written(folder: Path) -> None:
    pytest.importorskip("dlib", reason="the faces preset needs: pip install -e '.[faces]'")
    root = shared_path("att-faces")
    for person, subject in (("alice", "s1"), ("bob", "s2")):
        (folder / person).mkdir(exist_ok=True)
        for n in (1, 2, 3):
            Image.open(root / subject / f"{n}.pgm").convert("RGB").save(folder / person / f"{n}.jpg")
    Image.open(root / "s1" / "9.pgm").convert("RGB").save(folder / "door_cam.jpg")
    out = run_block("Face verification", folder).stdout  # verify exits 3 when not verified: -e would fail
    assert "verified as alice" in out, out
    assert any(line.split("\t")[1:2] == ["alice"] for line in out.splitlines()), out  # predict, 1:N


def test_beyond_one_machine_runs_as_written(folder: Path) -> None:
    pytest.importorskip("ray", reason="vecclf embed / predict --ray need: pip install -e '.[ray]'")
    run_block("Beyond one machine", folder)
    assert list((folder / "vectors").glob("*.parquet")) and list((folder / "answers").glob("*.parquet"))
    assert (folder / "st2").is_dir() and (folder / "backup" / "manifest.json").is_file()
