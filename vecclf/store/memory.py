"""What a store keeps in memory beside its indexes: each space's label view and recently used input records.

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
