"""A prediction as one flat row of a results table: what `predict --out` and batch jobs write."""

from __future__ import annotations

import json
from typing import Any

from .inputs import Failure


def time_of(source: str) -> float | None:
    """The time of a video frame named ``VIDEO#t=SECONDS``, else None."""
    head, sep, fragment = source.rpartition("#t=")
    if not sep or not head:
        return None
    try:
        return float(fragment)
    except ValueError:
        return None


def prediction_row(p: Any) -> dict[str, Any]:
    """A prediction as one flat row of a results table."""
    return {
        "source": p.source,
        "time_s": time_of(p.source),
        "text": p.text,
        "concept": p.concept,
        "nearest": p.nearest,
        "score": p.score,
        "similarity": p.similarity,
        "threshold": p.threshold,
        "rejected_by": p.rejected_by,
        "method": p.method,
        "stale": p.stale,
        "scores": json.dumps(p.scores, ensure_ascii=False),
        "error": None,
    }


def failure_row(f: Failure) -> dict[str, Any]:
    """An input that could not be answered, as a row of the same table."""
    return {key: None for key in COLUMNS} | {"source": f.source, "error": f.reason}


COLUMNS = (
    "source", "time_s", "text", "concept", "nearest", "score", "similarity", "threshold", "rejected_by", "method", "stale",
    "scores", "error",
)  # fmt: skip


def results_schema() -> Any:
    """The Arrow schema of a results table (Parquet output)."""
    import pyarrow as pa

    numbers, flags = ("time_s", "score", "similarity", "threshold"), ("stale",)
    return pa.schema(
        [(c, pa.float64() if c in numbers else pa.bool_() if c in flags else pa.string()) for c in COLUMNS]
    )
