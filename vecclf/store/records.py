"""What goes into a store and what comes back out: plain records, no database code."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..labels import LabelView


@dataclass(frozen=True)
class NewInput:
    """One row to add. ``parent`` is the index, within the same batch, of a frame's video."""

    kind: str
    space: str
    content_hash: str
    vector: np.ndarray
    source: str | None = None
    text: str | None = None
    parent: int | None = None
    frame_index: int | None = None
    timestamp_s: float | None = None
    metadata: dict[str, Any] | None = None
    concepts: tuple[str, ...] = ()
    negatives: tuple[str, ...] = ()
    thumbnail: bytes | None = None  # small JPEG shown beside results


@dataclass(frozen=True)
class InputRecord:
    """A stored input as read back from the catalogue."""

    id: int
    kind: str
    space: str
    source: str | None
    text: str | None
    parent_id: int | None
    frame_index: int | None
    timestamp_s: float | None
    concepts: list[str] = field(default_factory=list)
    negatives: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {k: v for k, v in self.__dict__.items()}

    def copy(self) -> InputRecord:
        """A copy whose label lists the caller may change."""
        # spelled out: dataclasses.replace took ~20 us a record, 10% of a 1,000-query batch prediction
        return InputRecord(
            self.id,
            self.kind,
            self.space,
            self.source,
            self.text,
            self.parent_id,
            self.frame_index,
            self.timestamp_s,
            list(self.concepts),
            list(self.negatives),
        )


@dataclass(frozen=True)
class ConceptInfo:
    """A concept and how many inputs are labelled with it."""

    name: str
    positives: int
    negatives: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "positives": self.positives, "negatives": self.negatives}


@dataclass(frozen=True)
class SpaceState:
    """What a prediction needs to know of one space, read at once under one view of the store."""

    space: str
    generation: int
    view: LabelView
    vectors: int  # how many the index holds
    head_generation: int | None  # the generation its stored head was trained at, if it has one

    @property
    def head_fresh(self) -> bool:
        """Whether a stored head was trained at the current generation."""
        return self.head_generation == self.generation


Marks = dict[str, bool]
"""One input's labels: normalised concept name -> positive?"""


def new_records(items: Sequence[NewInput], ids: Sequence[int], marks_of: Sequence[Marks]) -> list[InputRecord]:
    """The records a read would give back for just-added items (a frame carries its video's labels)."""
    out = []
    for i, (it, input_id) in enumerate(zip(items, ids)):
        marks = marks_of[it.parent if it.parent is not None else i]
        out.append(
            InputRecord(
                input_id,
                it.kind,
                it.space,
                it.source,
                it.text,
                ids[it.parent] if it.parent is not None else None,
                None if it.frame_index is None else int(it.frame_index),
                None if it.timestamp_s is None else float(it.timestamp_s),
                sorted(n for n, pos in marks.items() if pos),
                sorted(n for n, pos in marks.items() if not pos),
            )
        )
    return out
