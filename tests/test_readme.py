"""The README's Python examples run as written (in a folder holding the files they name)."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import solid_image

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
