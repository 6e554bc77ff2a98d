"""What a store keeps in memory beside its indexes: each space's label view, recently used input records and,
once warmed, a filter of its content hashes.

Adding a concept to a large store stays cheap because an add extends the cached label view in place
instead of re-reading every label, and evidence lookups for just-added or recently read inputs need no
query. This is safe because one process is the store's only writer; the :class:`~vecclf.store.Store`
tells this memory about every write, under its write lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from ..labels import LabelView
from .records import InputRecord, Marks, NewInput, new_records

RECORD_CACHE_SIZE = 20_000  # input records remembered (about 10 MB)


class Memory:
    """Label views by space and input records by id."""

    def __init__(self) -> None:
        self._views: dict[str, LabelView] = {}
        self._records: dict[int, InputRecord] = {}
        self._hashes: dict[str, HashFilter] = {}

    def hash_filter(self, space: str) -> HashFilter | None:
        """The content-hash filter of ``space``, if one was built (see :meth:`keep_hashes`)."""
        return self._hashes.get(space)

    def keep_hashes(self, space: str, stored: Iterable[str]) -> None:
        """Build the filter of ``space`` from every content hash stored in it."""
        self._hashes[space] = HashFilter(stored)

    def hashes_added(self, space: str, hashes: Iterable[str]) -> None:
        """After a committed add to ``space``: its content hashes join the filter (if there is one)."""
        kept = self._hashes.get(space)
        if kept is not None:
            kept.add(hashes)

    def classes(self, spaces: Iterable[str]) -> set[str]:
        """Concepts that are classes in the remembered views of these spaces."""
        return {c for space in spaces for c in self._views.get(space, LabelView.empty()).classes}

    def view(self, space: str, generation: int, read: Callable[[], LabelView]) -> LabelView:
        """The view of ``space`` at ``generation``: remembered, or read (and remembered)."""
        view = self._views.get(space)
        if view is None or view.generation != generation:
            view = self._views[space] = read()
        return view

    def make_room(self, space: str) -> None:
        """Give the remembered view of ``space`` spare room for adds (see :meth:`LabelView.with_room`)."""
        view = self._views.get(space)
        if view is not None:
            self._views[space] = view.with_room()

    def added(
        self,
        space: str,
        before: int,
        after: int,
        items: Sequence[NewInput],
        rows: Sequence[int],
        ids: Sequence[int],
        marks_of: Sequence[Marks],
        *,
        relabels_older: bool,
    ) -> None:
        """After an add to ``space`` (generation ``before`` -> ``after``) of ``items[rows]``: the view at
        ``before`` is extended rather than re-read — unless the add gave labels to older inputs' concepts."""
        view = self._views.pop(space, None)
        if view is None or view.generation != before or relabels_older:
            return
        parents = [items[i].parent for i in rows]
        roots = np.array([ids[i] if p is None else ids[p] for i, p in zip(rows, parents)], np.int64)
        space_ids = np.array([ids[i] for i in rows], np.int64)
        marks = {ids[i]: marks_of[i] for i in rows if marks_of[i]}
        self._views[space] = view.with_added(after, space_ids, roots, marks)

    def remember_added(self, items: Sequence[NewInput], ids: Sequence[int], marks_of: Sequence[Marks]) -> None:
        """Remember the records of a small add (likely asked about next; a bulk load is not)."""
        if len(items) <= RECORD_CACHE_SIZE // 20:
            self.remember(new_records(items, ids, marks_of))

    def remember(self, records: Iterable[InputRecord]) -> None:
        """Remember records read from the catalogue."""
        new = {r.id: r for r in records}
        if len(self._records) + len(new) > RECORD_CACHE_SIZE:
            self._records = {}  # a new dict, not clear(): readers may be looking things up in the old one
        self._records.update(new)

    def records(self, ids: Iterable[int]) -> dict[int, InputRecord]:
        """The remembered records among ``ids``."""
        return {i: r for i in ids if (r := self._records.get(i)) is not None}

    def removed(self, spaces: Iterable[str]) -> None:
        """After inputs were deleted: their spaces' views and every record are stale."""
        for space in spaces:
            self._views.pop(space, None)
        self._records = {}

    def relabelled(self) -> None:
        """After labels or concept names changed: every view and record is stale."""
        self._views.clear()
        self._records = {}

    def forget(self) -> None:
        """Drop everything kept."""
        self.relabelled()
        self._hashes.clear()


class HashFilter:
    """A superset of the content hashes stored in one space, as 64-bit hashes (8 bytes per input).

    A write first asks it which of its hashes may be stored: most new inputs are new, and this answers
    them without the catalogue query that scans every stored hash (~2.5 ms at 1M inputs). A deleted
    input's hash stays (it only makes the catalogue be asked), so nothing is removed.
    """

    MERGE_AT = 1 << 16  # recent hashes kept in a set until merged into the sorted array

    def __init__(self, stored: Iterable[str]) -> None:
        self._sorted = np.unique(np.fromiter((hash(h) for h in stored), np.int64))
        self._recent: set[int] = set()

    def may_hold(self, hashes: Sequence[str]) -> list[str]:
        """Those of ``hashes`` that may be stored (every stored one among them is)."""
        keys = np.fromiter((hash(h) for h in hashes), np.int64, len(hashes))
        at = np.minimum(np.searchsorted(self._sorted, keys), max(len(self._sorted) - 1, 0))
        held = self._sorted[at] == keys if len(self._sorted) else np.zeros(len(keys), bool)
        return [h for h, k, found in zip(hashes, keys.tolist(), held.tolist()) if found or k in self._recent]

    def add(self, hashes: Iterable[str]) -> None:
        """Count more stored hashes."""
        self._recent.update(hash(h) for h in hashes)
        if len(self._recent) >= self.MERGE_AT:
            self._sorted = np.union1d(self._sorted, np.fromiter(self._recent, np.int64, len(self._recent)))
            self._recent = set()
