"""Coalescing concurrent requests' inputs into one embedding call run in a worker thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from starlette.concurrency import run_in_threadpool

from ..embed import Embedded
from ..inputs import Failure, Item

Results = list[list[Embedded] | Failure]


class MicroBatcher:
    """Inputs of requests that arrive while a batch runs (or within ``max_wait`` of the first) share the next
    call, so many clients cost one model forward instead of many.

    ``fn`` embeds a list of items and returns, per item, its embedded parts or its failure: one bad input
    fails only its own request; an error of the whole call (the model itself) reaches every waiter.
    """

    def __init__(self, fn: Callable[[list[Item]], Results], *, max_batch: int = 64, max_wait: float = 0.002) -> None:
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._pending: list[tuple[Sequence[Item], asyncio.Future[Results]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, items: Sequence[Item]) -> Results:
        """Queue one request's items; resolves to their results, in order."""
        fut: asyncio.Future[Results] = asyncio.get_running_loop().create_future()
        self._pending.append((items, fut))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        return await fut

    async def _run(self) -> None:
        await asyncio.sleep(self.max_wait)
        while self._pending:
            batch: list[tuple[Sequence[Item], asyncio.Future[Results]]] = []
            size = 0
            while self._pending and (not batch or size + len(self._pending[0][0]) <= self.max_batch):
                entry = self._pending.pop(0)
                batch.append(entry)
                size += len(entry[0])
            items = [it for request_items, _ in batch for it in request_items]
            try:
                out = await run_in_threadpool(self.fn, items)
            except Exception as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            start = 0
            for request_items, fut in batch:
                if not fut.done():
                    fut.set_result(out[start : start + len(request_items)])
                start += len(request_items)


def results_of(results: Results) -> tuple[list[Embedded], list[Failure]]:
    """Every embedded part of a request's results, and the inputs that failed."""
    out: list[Embedded] = []
    failed: list[Failure] = []
    for r in results:
        if isinstance(r, Failure):
            failed.append(r)
        else:
            out += r
    return out, failed
