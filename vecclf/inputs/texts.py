"""Texts: single texts, ``.txt`` files (one per line) and CSV/JSONL tables of texts and labels."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from ..config import Limits
from ..errors import InvalidInputError, LimitExceededError
from .items import Failure, TextItem, check_path, sha256_hex


def make_text(text: str, *, source: str = "<text>", limits: Limits | None = None) -> TextItem:
    """Validate a text input: non-empty after stripping, no NUL, within the length limit."""
    limits = limits or Limits()
    if not isinstance(text, str):
        raise InvalidInputError(f"{source}: text must be a string, got {type(text).__name__}")
    cleaned = text.strip()
    if not cleaned:
        raise InvalidInputError(f"{source}: empty text")
    if "\x00" in cleaned:
        raise InvalidInputError(f"{source}: text contains a NUL character")
    if len(cleaned) > limits.max_text_chars:
        raise LimitExceededError(f"{source}: text of {len(cleaned)} characters exceeds {limits.max_text_chars}")
    return TextItem(source=source, text=cleaned, content_hash=sha256_hex(cleaned.encode("utf-8")))


def read_text_lines(path: Path) -> list[str]:
    """One text per non-empty line of a ``.txt`` file."""
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_text_table(
    path: Path, *, text_column: str | None = None, label_column: str | None = None
) -> list[tuple[str, str | None]]:
    """Read ``(text, label)`` rows from CSV or JSONL.

    Columns default to the first of ``text``/``sentence``/``utterance`` and of
    ``label``/``category``/``concept``/``intent``; a missing label column gives ``None`` labels.
    """
    path = check_path(path)
    suffix = path.suffix.lower()
    rows: list[dict[str, object]]
    try:
        if suffix == ".csv":
            with path.open(newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
        elif suffix in (".jsonl", ".ndjson"):
            rows = []
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if not line.strip():
                    continue
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise InvalidInputError(f"{path}:{n}: expected a JSON object per line")
                rows.append(obj)
        else:
            raise InvalidInputError(f"{path}: unsupported table type {suffix!r} (use .csv or .jsonl)")
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise InvalidInputError(f"{path}: cannot parse ({exc})") from exc
    if not rows:
        raise InvalidInputError(f"{path}: no rows")
    columns = list(rows[0].keys())
    text_col = text_column or _pick(columns, ("text", "sentence", "utterance", "query"))
    label_col = label_column or _pick(columns, ("label", "category", "concept", "intent", "class"))
    if text_col is None or text_col not in columns:
        raise InvalidInputError(f"{path}: text column {text_column or 'text'!r} not found; columns are {columns}")
    if label_column is not None and label_column not in columns:
        raise InvalidInputError(f"{path}: label column {label_column!r} not found; columns are {columns}")
    out: list[tuple[str, str | None]] = []
    for row in rows:
        label = row.get(label_col) if label_col else None
        out.append((str(row.get(text_col) or ""), str(label) if label not in (None, "") else None))
    return out


def _pick(columns: Sequence[str], names: Sequence[str]) -> str | None:
    lowered = {c.lower(): c for c in columns}
    for name in names:
        if name in lowered:
            return lowered[name]
    return None


def decode_texts(texts: Iterable[tuple[str, str]], *, limits: Limits) -> Iterator[TextItem | Failure]:
    """``(source, text)`` pairs as text items, or failures naming the source."""
    for source, text in texts:
        try:
            yield make_text(text, source=source, limits=limits)
        except InvalidInputError as exc:
            yield Failure(source, str(exc), exc)
