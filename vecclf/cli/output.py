"""How the command shows results: one JSON document or human lines on stdout; progress, warnings and
per-input failures on stderr; predictions streamed to a CSV, JSONL or Parquet file."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from ..errors import InvalidInputError
from ..inputs import Failure
from ..results import COLUMNS, results_schema

Progress = Callable[[int], None]
OUT_SUFFIXES = (".csv", ".jsonl", ".parquet")


def emit(as_json: bool, payload: Any, human: Callable[[], None]) -> None:
    """Print ``payload`` as one JSON document, or call ``human`` to print lines."""
    if as_json:
        json.dump(payload, sys.stdout, indent=2, ensure_ascii=False, default=str)
        sys.stdout.write("\n")
    else:
        human()


def warn(message: str) -> None:
    """A line on stderr, after ``vecclf:``."""
    print(f"vecclf: {message}", file=sys.stderr)


def said(f: Failure) -> str:
    """``SOURCE: REASON``, naming the source once (many reasons start with it)."""
    reason = f.reason.removeprefix(f"{f.source}: ")
    return f"{f.source}: {reason}"


def report_failures(failures: list[Failure], what: str = "skipped") -> None:
    """Each input that failed, on stderr."""
    for f in failures:
        print(f"{what} {said(f)}", file=sys.stderr)


def model_line(identity: dict[str, Any]) -> str:
    """An embedder identity as one line: its model, then its other settings."""
    rest = dict(identity)
    name = rest.pop("model", None) or rest.get("kind", "?")
    return f"{name} ({', '.join(f'{k} {v}' for k, v in rest.items() if v is not None)})"


def failures_json(failures: list[Failure]) -> list[dict[str, str]]:
    """Failures as JSON objects."""
    return [{"source": f.source, "reason": f.reason} for f in failures]


@contextmanager
def progress(desc: str, total: int | None = None, unit: str = "input") -> Iterator[Progress]:
    """A progress bar on stderr (a terminal only) with the total, rate and time left when the total is known;
    it shows only once the work has taken a second."""
    from tqdm import tqdm

    bar = tqdm(desc=desc, total=total, unit=unit, file=sys.stderr, disable=None, leave=False, delay=1.0)
    try:
        yield bar.update
    finally:
        bar.close()


class ResultWriter:
    """Rows written as they come to ``.csv``, ``.jsonl`` or ``.parquet`` (in batches): nothing accumulates."""

    def __init__(self, path: Path) -> None:
        suffix = path.suffix.lower()
        if suffix not in OUT_SUFFIXES:
            raise InvalidInputError(f"--out must end in {', '.join(OUT_SUFFIXES)}, got {path.name!r}")
        self.path, self.kind, self.rows = path, suffix, 0
        self._file: TextIO | None = None
        self._csv: Any = None
        self._parquet: Any = None
        self._pending: list[dict[str, Any]] = []
        try:
            if suffix != ".parquet":
                self._file = path.open("w", newline="", encoding="utf-8")
                if suffix == ".csv":
                    self._csv = csv.DictWriter(self._file, fieldnames=COLUMNS)
                    self._csv.writeheader()
        except OSError as exc:
            raise InvalidInputError(f"cannot write {path}: {exc.strerror}") from exc

    def write(self, row: dict[str, Any]) -> None:
        """Add one row."""
        self.rows += 1
        if self._csv is not None:
            self._csv.writerow(row)
        elif self._file is not None:
            self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            self._pending.append(row)
            if len(self._pending) >= 1000:
                self._flush_parquet()

    def _flush_parquet(self, final: bool = False) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._pending and not (final and self._parquet is None):
            return
        schema = results_schema()
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(str(self.path), schema)
        self._parquet.write_table(pa.Table.from_pylist(self._pending, schema=schema))
        self._pending = []

    def close(self) -> None:
        """Finish the file (a table with no rows still has its columns)."""
        if self.kind == ".parquet":
            self._flush_parquet(final=True)
            self._parquet.close()
        elif self._file is not None:
            self._file.close()
