"""The query path: a stream of decoded inputs becomes answers, a chunk at a time.

Each chunk is embedded together (one model call per modality) while the next one decodes, answered
with one batch per embedding space, and given back in input order, with an input that could not be
read or embedded as a :class:`~vecclf.inputs.Failure` in its place.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

import numpy as np

from .embed import Embedded, Embedder, embed_items
from .errors import InvalidInputError, VecclfError
from .inputs import Failure, Item, decode_ahead

Query = tuple[str, str, np.ndarray]
"""``(source, space, vector)`` of one query."""
T = TypeVar("T")


def per_space(queries: Sequence[Query], answer: Callable[[str, np.ndarray, list[str]], list[T]]) -> list[T]:
    """``answer(space, vectors, sources)`` once per space over the queries in it; answers in query order."""
    groups: dict[str, list[int]] = {}
    for n, (_, space, _) in enumerate(queries):
        groups.setdefault(space, []).append(n)
    out: dict[int, T] = {}
    for space, where in groups.items():
        got = answer(space, np.stack([queries[n][2] for n in where]), [queries[n][0] for n in where])
        out.update(zip(where, got))
    return [out[n] for n in range(len(queries))]


def as_queries(embedded: Sequence[Embedded]) -> list[Query]:
    """Embedded items as queries."""
    return [(e.item.source, e.space, e.vector) for e in embedded]


def strict(results: Iterable[T | Failure], failures: list[Failure] | None = None) -> list[T]:
    """Every answer; an input that failed goes into ``failures`` when given, else raises its error."""
    out: list[T] = []
    for r in results:
        if isinstance(r, Failure):
            if failures is None:
                raise r.error if isinstance(r.error, VecclfError) else InvalidInputError(f"{r.source}: {r.reason}")
            failures.append(r)
        else:
            out.append(r)
    return out


QUERY_CHUNK = 64  # queries embedded and answered together: one model call per modality


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def answers(
    embedder: Embedder, inputs: Iterable[Item | Failure], split: bool, answer: Callable[[list[Embedded]], list[T]]
) -> Iterator[T | Failure]:
    """``answer`` over the embedded inputs, :data:`QUERY_CHUNK` at a time while the next ones decode;
    in input order, an input that could not be read or embedded yields its failure."""
    empty = True
    for batch in chunks(decode_ahead(inputs), QUERY_CHUNK):
        empty = False
        done = embed_items(embedder, [it for it in batch if not isinstance(it, Failure)], split=split)
        given = iter(answer(done.embedded) if done.embedded else [])
        results = iter(done.per_input)
        for it in batch:
            result = it if isinstance(it, Failure) else next(results)
            if isinstance(result, Failure):
                yield result
            else:
                yield from itertools.islice(given, len(result))
    if empty:
        raise InvalidInputError("nothing to query: give at least one image, video or text")
