"""Labelled tables: rows/s of `vecclf import table.csv` against `vecclf add texts.txt` of the same texts.

Both are fresh processes into a fresh store (nothing from the embedding cache), rounds interleaved, so the ratio
is what the table's labels cost on top of embedding and storing the same texts: `import` stores each row with
its label (the table's labels are many: BANKING77's train split with each intent cut in two by a seeded coin,
154 labels); `add` stores the same texts under one concept.

    python benchmarks/bench_import.py [--rows 10003] [--rounds 3] [--smoke]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from _data import SHARED, emit, interleaved, load_average, spread


def table(n: int, tmp: Path) -> tuple[Path, Path, str]:
    source = SHARED / "banking77" / "train.csv"
    rng = np.random.default_rng(0)
    if source.is_file():
        with source.open(newline="") as fh:
            rows = [(r["text"], r["category"]) for r in csv.DictReader(fh)][:n]
        described = f"BANKING77 train, {len(rows)} rows"
    else:
        words = ["card", "account", "transfer", "rate", "cash", "refund", "pin", "limit", "fee", "top up"]
        rows = [(" ".join(rng.choice(words, 6)) + f" {i}", f"intent{i % 77}") for i in range(n)]
        described = f"seeded sentences, {n} rows"
    labelled = [(text, f"{label}_{int(rng.integers(2))}") for text, label in rows]
    csv_path, txt_path = tmp / "table.csv", tmp / "texts.txt"
    with csv_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(labelled)
    txt_path.write_text("".join(" ".join(text.split()) + "\n" for text, _ in labelled))
    return csv_path, txt_path, f"{described}, {len({label for _, label in labelled})} labels"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_003)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.rows, args.rounds = 40, 1
    vecclf = [sys.executable, "-m", "vecclf.cli"]
    started = load_average()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        csv_path, txt_path, described = table(args.rows, tmp)
        stores: dict[str, list[str]] = {"import": [], "add": []}
        for side in stores:  # every round's fresh store made before any timing
            for r in range(args.rounds):
                path = str(tmp / f"{side}{r}")
                subprocess.run(
                    [*vecclf, "init", "--model", "offline", "--store", path], check=True, capture_output=True
                )
                stores[side].append(path)

        def run(side: str, cmd: list[str]) -> None:
            subprocess.run([*vecclf, *cmd, "--store", stores[side].pop()], check=True, capture_output=True)

        times = interleaved(
            {
                "import": lambda: run("import", ["import", str(csv_path), "--label-column", "label"]),
                "add": lambda: run("add", ["add", str(txt_path), "--concept", "all"]),
            },
            args.rounds,
        )
        rows = len(txt_path.read_text().splitlines())
    result: dict[str, Any] = {
        "benchmark": "import_table_vs_add",
        "table": described,
        "embedder": "offline (all-MiniLM-L6-v2 texts)",
        "load_average_at_start": started,
    }
    for side, t in times.items():
        result[side] = {"rows_per_s": round(rows / statistics.median(t), 1), **spread(t)}
    result["import_over_add (throughput ratio)"] = round(
        statistics.median(times["add"]) / statistics.median(times["import"]), 3
    )
    emit(result)


if __name__ == "__main__":
    main()
