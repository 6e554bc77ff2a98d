"""Texts: single texts, ``.txt`` files (one per line) and CSV/JSONL tables of texts and labels."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from ..config import Limits
from ..errors import InvalidInputError, LimitExceededError
from .items import Failure, TextItem, check_path, read_bounded, sha256_hex, shown


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
    if any("\ud800" <= ch <= "\udfff" for ch in cleaned):
        raise InvalidInputError(f"{source}: text is not valid Unicode (a lone surrogate)")
    if len(cleaned) > limits.max_text_chars:
        raise LimitExceededError(f"{source}: text of {len(cleaned)} characters exceeds {limits.max_text_chars}")
    return TextItem(source=source, text=cleaned, content_hash=sha256_hex(cleaned.encode("utf-8")))


def text_file_items(path: Path, *, limits: Limits) -> Iterator[TextItem | Failure]:
    """One text item per non-empty line of a ``.txt`` file (sources ``FILE:LINE``); a line that is not a valid
    text (not UTF-8, a NUL, too long) is a failure of its own and the other lines still come."""
    name = shown(path)
    try:
        data = read_bounded(path, limits.max_text_file_bytes, "a text file")
    except (InvalidInputError, OSError) as exc:
        yield Failure(name, exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc), exc)
        return
    for n, raw in enumerate(data.removeprefix(b"\xef\xbb\xbf").splitlines(), start=1):
        source = f"{name}:{n}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Failure(source, f"{source}: not valid UTF-8 (byte {exc.start + 1})", InvalidInputError(str(exc)))
            continue
        if not line.strip():
            continue
        try:
            yield make_text(line, source=source, limits=limits)
        except InvalidInputError as exc:
            yield Failure(source, str(exc), exc)


def read_text_table(
    path: Path, *, text_column: str | None = None, label_column: str | None = None, limits: Limits | None = None
) -> list[tuple[int, str, str | None]]:
    """Read ``(line, text, label)`` rows from CSV (a UTF-8 byte-order mark allowed) or JSONL.

    Columns default to the first of ``text``/``sentence``/``utterance`` and of
    ``label``/``category``/``concept``/``intent``; a missing label column gives ``None`` labels. The whole
    table is read and checked before anything is stored; an error names the file and line.
    """
    path = check_path(path)
    name = shown(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson"):
        raise InvalidInputError(f"{name}: unsupported table type {suffix!r} (use .csv or .jsonl)")
    data = read_bounded(path, (limits or Limits()).max_text_file_bytes, "a table")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InvalidInputError(f"{name}:{line}: not valid UTF-8") from exc
    rows: list[tuple[int, dict[str, object]]] = []
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        try:
            for row in reader:
                if None in row:  # more fields than the header names
                    raise InvalidInputError(f"{name}:{reader.line_num}: more fields than the header has")
                rows.append((reader.line_num, row))
        except csv.Error as exc:
            raise InvalidInputError(f"{name}:{reader.line_num}: cannot parse ({exc})") from exc
    else:
        for n, entry in enumerate(text.splitlines(), start=1):
            if not entry.strip():
                continue
            try:
                obj = json.loads(entry)
            except (json.JSONDecodeError, RecursionError) as exc:
                raise InvalidInputError(f"{name}:{n}: not valid JSON ({exc})") from exc
            if not isinstance(obj, dict):
                raise InvalidInputError(f"{name}:{n}: expected a JSON object per line")
            rows.append((n, obj))
    if not rows:
        raise InvalidInputError(f"{name}: no rows")
    columns = list(rows[0][1].keys())
    text_col = text_column or _pick(columns, ("text", "sentence", "utterance", "query"))
    label_col = label_column or _pick(columns, ("label", "category", "concept", "intent", "class"))
    if text_col is None or text_col not in columns:
        raise InvalidInputError(f"{name}: text column {text_column or 'text'!r} not found; columns are {columns}")
    if label_column is not None and label_column not in columns:
        raise InvalidInputError(f"{name}: label column {label_column!r} not found; columns are {columns}")
    out: list[tuple[int, str, str | None]] = []
    for n, row in rows:
        label = row.get(label_col) if label_col else None
        value = row.get(text_col)
        out.append((n, "" if value is None else str(value), str(label) if label not in (None, "") else None))
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
