"""Labels as arrays, and the rules for names and ids: numpy only.

A :class:`LabelView` holds one space's labels in the shape k-NN voting needs (ids sorted, one row per
labelled example, one column per concept); :func:`locate` finds ids in sorted arrays. The store builds
views; classifiers and evaluation read them.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from .errors import InvalidInputError

UNKNOWN = "unknown"
"""The answer of an open-set rejection; no concept may take this name."""
RESERVED_CONCEPTS = frozenset({UNKNOWN})
MAX_CONCEPT_CHARS = 200
MAX_ID = 2**63 - 1


def locate(sorted_ids: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``wanted`` ids in the ascending ``sorted_ids`` and which of them are there at all.

    Positions of absent ids are meaningless (in range, so they can still index); ``-1`` is never found.
    """
    wanted = np.asarray(wanted, dtype=np.int64)
    if len(sorted_ids) == 0:
        return np.zeros(wanted.shape, dtype=np.int64), np.zeros(wanted.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_ids, wanted), len(sorted_ids) - 1)
    return pos, (wanted >= 0) & (sorted_ids[pos] == wanted)


def sample_rows(n: int, m: int, seed: int) -> np.ndarray:
    """Ascending positions of a seeded sample of ``m`` of ``n`` rows (all of them when ``n <= m``)."""
    if n <= m:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, m, replace=False))


@dataclass
class _Room:
    """Buffers a label view's arrays are leading slices of, with spare room for later adds."""

    ids: np.ndarray
    roots: np.ndarray
    label_roots: np.ndarray
    matrix: np.ndarray

    @classmethod
    def around(cls, view: LabelView, n_ids: int, n_rows: int, n_classes: int) -> _Room:
        """New buffers holding ``view``'s arrays, with room for ``n_ids`` ids, ``n_rows`` rows, ``n_classes`` classes."""
        room = cls(
            np.zeros(n_ids + max(1024, n_ids // 4), np.int64),
            np.zeros(n_ids + max(1024, n_ids // 4), np.int64),
            np.zeros(n_rows + max(1024, n_rows // 4), np.int64),
            np.zeros((n_rows + max(1024, n_rows // 4), n_classes + 16), np.int8),
        )
        room.ids[: len(view.ids)] = view.ids
        room.roots[: len(view.roots)] = view.roots
        room.label_roots[: len(view.label_roots)] = view.label_roots
        room.matrix[: view.matrix.shape[0], : view.matrix.shape[1]] = view.matrix
        return room

    def fits(self, n_ids: int, n_rows: int, n_classes: int) -> bool:
        return len(self.ids) >= n_ids and len(self.label_roots) >= n_rows and self.matrix.shape[1] >= n_classes


@dataclass(frozen=True)
class LabelView:
    """Labels of one space as arrays, for vectorised k-NN voting.

    ``ids``/``roots`` are aligned and sorted by id (a frame's root is its video);
    ``matrix[r, c]`` is +1/-1/0 for labelled root ``label_roots[r]`` and ``classes[c]``.
    """

    generation: int
    ids: np.ndarray
    roots: np.ndarray
    classes: list[str]
    label_roots: np.ndarray
    matrix: np.ndarray
    # This view is the one at `base_generation` plus adds; `changed_at` holds the generation at which each
    # class last gained labels since then, so caches derived per class (open-set thresholds) recompute just
    # the classes changed since they were computed. A full rebuild is its own base.
    base_generation: int = -1
    changed_at: Mapping[str, int] = field(default_factory=dict)
    # Classes that first appeared in an add have no rows before the one it started at (labels on older
    # inputs force a full re-read), so their members are found without scanning every row.
    first_rows: Mapping[str, int] = field(default_factory=dict)
    # Whether several ids share a root (frames of a video): computed when not given.
    frames: bool | None = None
    # Buffers the arrays above are leading slices of: adds write new ids, rows and concept columns in place
    # instead of copying N-sized arrays; only the newest view is ever extended, past every older view's end.
    room: _Room | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.frames is None:
            object.__setattr__(self, "frames", bool(len(self.ids) and not np.array_equal(self.ids, self.roots)))

    @classmethod
    def empty(cls) -> LabelView:
        """A view with no ids and no classes."""
        none = np.zeros(0, np.int64)
        return cls(-1, none, none, [], none, np.zeros((0, 0), np.int8))

    @classmethod
    def single_label(cls, columns: np.ndarray, classes: Sequence[str]) -> LabelView:
        """Rows ``0..n-1``, row ``i`` a positive example of ``classes[columns[i]]`` (plain vectors, no store)."""
        ids = np.arange(len(columns), dtype=np.int64)
        matrix = np.zeros((len(columns), len(classes)), dtype=np.int8)
        matrix[ids, np.asarray(columns, dtype=np.int64)] = 1
        return cls(0, ids, ids, list(classes), ids, matrix)

    def rows(self, rows: np.ndarray) -> LabelView:
        """A view of some label rows only (same ids and classes; a new view, without this one's history)."""
        return LabelView(
            self.generation,
            self.ids,
            self.roots,
            self.classes,
            self.label_roots[rows],
            self.matrix[rows],
            frames=self.frames,
        )

    def with_added(
        self, generation: int, ids: np.ndarray, roots: np.ndarray, labels: dict[int, dict[str, bool]]
    ) -> LabelView:
        """This view plus new inputs (ids above every stored one) and their labels ``{root: {concept: positive}}``.

        New concepts are appended after the existing ones (a full rebuild lists them sorted).
        """
        known = set(self.classes)
        classes = self.classes + sorted({c for m in labels.values() for c, pos in m.items() if pos} - known)
        col = {c: j for j, c in enumerate(classes)}
        rows = sorted(r for r, marks in labels.items() if any(c in col for c in marks))
        n_ids, n_old, n_new = len(self.ids) + len(ids), len(self.label_roots), len(self.label_roots) + len(rows)
        room = self.room
        if room is None or not room.fits(n_ids, n_new, len(classes)):
            room = _Room.around(self, n_ids, n_new, len(classes))
        room.ids[len(self.ids) : n_ids] = ids
        room.roots[len(self.ids) : n_ids] = roots
        room.label_roots[n_old:n_new] = rows
        for n, r in enumerate(rows):
            for c, pos in labels[r].items():
                if c in col:
                    room.matrix[n_old + n, col[c]] = 1 if pos else -1
        touched = {c for r in rows for c in labels[r] if c in col}
        return LabelView(
            generation=generation,
            ids=room.ids[:n_ids],
            roots=room.roots[:n_ids],
            classes=classes,
            label_roots=room.label_roots[:n_new],
            matrix=room.matrix[:n_new, : len(classes)],
            base_generation=self.base_generation if self.base_generation >= 0 else self.generation,
            changed_at={**self.changed_at, **dict.fromkeys(touched, generation)},
            first_rows={**self.first_rows, **dict.fromkeys(classes[len(self.classes) :], n_old)},
            frames=bool(self.frames or not np.array_equal(ids, roots)),
            room=room,
        )

    def with_room(self) -> LabelView:
        """This view with spare room allocated for later adds (done at open, so the first add does not copy
        N-sized arrays on its path)."""
        if self.room is not None:
            return self
        room = _Room.around(self, len(self.ids), len(self.label_roots), len(self.classes))
        n, m = len(self.ids), len(self.label_roots)
        return dataclasses.replace(
            self,
            ids=room.ids[:n],
            roots=room.roots[:n],
            label_roots=room.label_roots[:m],
            matrix=room.matrix[:m, : len(self.classes)],
            room=room,
        )

    def members(self, column: int) -> np.ndarray:
        """Label roots positively labelled with ``classes[column]``, ascending."""
        start = self.first_rows.get(self.classes[column], 0)
        return self.label_roots[start:][self.matrix[start:, column] > 0]

    def changed_since(self, generation: int) -> set[str] | None:
        """Classes whose labels changed after ``generation``, or None when this view cannot tell."""
        if self.base_generation < 0 or generation < self.base_generation:
            return None
        return {c for c, g in self.changed_at.items() if g > generation}

    @property
    def has_frames(self) -> bool:
        """True when several ids share a root, so neighbours must be de-duplicated."""
        return bool(self.frames)

    def rows_for(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map neighbour ids (``-1`` = padding) to ``(root ids, label rows)``; ``-1`` where unknown/unlabelled."""
        flat = np.asarray(ids, dtype=np.int64).ravel()
        roots = np.full(flat.shape, -1, dtype=np.int64)
        pos, found = locate(self.ids, flat)
        roots[found] = self.roots[pos[found]]
        rows = np.full(flat.shape, -1, dtype=np.int64)
        lpos, ok = locate(self.label_roots, roots)
        rows[ok] = lpos[ok]
        return roots.reshape(np.shape(ids)), rows.reshape(np.shape(ids))


HIDDEN_CATEGORIES = {
    "Cc": "a control character",
    "Cf": "an invisible formatting character (zero-width or bidirectional)",
    "Cs": "a lone surrogate (not valid Unicode)",
    "Co": "a private-use character",
    "Cn": "an unassigned character",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}
"""Unicode categories a concept name may not contain: they are invisible or reorder text, so two names that look
the same could differ (or a name could display as another) on the page, in JSON and in a terminal."""


def check_concept_name(name: str) -> str:
    """A concept name normalised (NFC, stripped of surrounding whitespace), or a typed error saying what is wrong."""
    if not isinstance(name, str):
        raise InvalidInputError(f"concept name must be a string, got {type(name).__name__}")
    # only names short enough to be valid are remembered: a hostile megabyte name is checked, refused, forgotten
    return _checked_name(name) if len(name) <= 2 * MAX_CONCEPT_CHARS else _checked_name.__wrapped__(name)


@lru_cache(maxsize=8192)
def _checked_name(name: str) -> str:  # a bulk load names the same few concepts on every row
    for ch in name:
        kind = HIDDEN_CATEGORIES.get(unicodedata.category(ch))
        if kind is not None:
            raise InvalidInputError(f"concept name {name!a} contains {kind} (U+{ord(ch):04X})")
    clean = unicodedata.normalize("NFC", name).strip()
    if not clean:
        raise InvalidInputError("concept name is empty")
    if len(clean) > MAX_CONCEPT_CHARS:
        raise InvalidInputError(f"concept name longer than {MAX_CONCEPT_CHARS} characters")
    if clean.lower() in RESERVED_CONCEPTS:
        raise InvalidInputError(f"concept name {clean!r} is reserved (predictions use it for open-set answers)")
    return clean


def check_ids(ids: Iterable[Any]) -> list[int]:
    """Validate input ids: integers in ``1..2**63-1`` (FAISS and DuckDB use int64)."""
    out = []
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise InvalidInputError(f"input ids must be integers, got {i!r}")
        if not 1 <= int(i) <= MAX_ID:
            raise InvalidInputError(f"input id {i} is out of range (1..{MAX_ID})")
        out.append(int(i))
    return out
