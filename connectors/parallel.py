"""Several page sequences fetched at once, their pages handed to one consumer thread.

The consumer (a connector's ``poll``) owns all cursor state, so only the HTTP requests run in parallel.
How many run at once is the platform's ``concurrency``: Canvas counts each request in flight against the
token's rate bucket (doc/api/throttling.md: 1-2 at a time "is unlikely to be throttled").
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

Tag = TypeVar("Tag")
Item = TypeVar("Item")

_DONE = object()


class _Stop(Exception):
    pass


def interleave(
    sources: Iterable[tuple[Tag, Callable[[], Iterator[Item]]]], workers: int
) -> Iterator[tuple[Tag, Item]]:
    """``(tag, item)`` from every source as items arrive; the first error stops the rest and is raised.

    Each source is a factory of an iterator, started when a worker is free. Closing the returned iterator
    early stops the workers after the request each has in hand.
    """
    pending: queue.SimpleQueue[tuple[Tag, Callable[[], Iterator[Item]]]] = queue.SimpleQueue()
    count = 0
    for source in sources:
        pending.put(source)
        count += 1
    if count == 0:
        return
    results: queue.Queue[tuple[object, object]] = queue.Queue(maxsize=workers * 2)
    stop = threading.Event()
    runner = _Runner(pending, results, stop)
    threads = [threading.Thread(target=runner.run, daemon=True) for _ in range(min(workers, count))]
    for thread in threads:
        thread.start()
    finished = 0
    try:
        while finished < len(threads):
            tag, item = results.get()
            if item is _DONE:
                finished += 1
            elif isinstance(item, _Failure):
                raise item.error
            else:
                yield tag, item  # type: ignore[misc]
    finally:
        stop.set()
        for thread in threads:
            # Unblock a worker waiting to hand over a result nobody will read.
            while thread.is_alive():
                try:
                    results.get_nowait()
                except queue.Empty:
                    thread.join(timeout=0.05)


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Runner(Generic[Tag, Item]):
    def __init__(
        self,
        pending: queue.SimpleQueue[tuple[Tag, Callable[[], Iterator[Item]]]],
        results: queue.Queue[tuple[object, object]],
        stop: threading.Event,
    ) -> None:
        self._pending, self._results, self._stop = pending, results, stop

    def run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    tag, factory = self._pending.get_nowait()
                except queue.Empty:
                    break
                for item in factory():
                    if self._stop.is_set():
                        raise _Stop
                    self._results.put((tag, item))
        except _Stop:
            pass
        except BaseException as error:  # handed to the consumer, which raises it
            self._results.put((None, _Failure(error)))
            return
        self._results.put((None, _DONE))
