"""Server-side batching: concurrent Predict calls merged into one model call.

What TF Serving's ``--enable_batching`` does, for the embedded gateway: a request of fewer
than ``max_batch_size`` windows waits at most ``batch_timeout_micros`` (from the first
request of a batch) for others; ``num_batch_threads`` workers each build a batch, run the
model once per version in it and hand every caller its own rows. Requests already at
``max_batch_size`` run directly. More than ``max_enqueued_batches`` x ``max_batch_size``
queued windows are refused (RESOURCE_EXHAUSTED), so overload sheds instead of queueing.

:func:`render_batching_parameters` writes the same four numbers as TF Serving's
``--batching_parameters_file`` (``serving/batching_parameters.txt``), so production TF
Serving batches like the gateway.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from soilcast.serving.errors import ErrorKind, ServingError


@dataclass
class _Item:
    model: Any
    arrays: dict[str, np.ndarray]
    n: int
    enqueued: float = field(default_factory=time.perf_counter)
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None


def render_batching_parameters(batching: Any) -> str:
    """TF Serving's batching_parameters_file (text proto of BatchingParameters)."""
    return ("# TF Serving --batching_parameters_file, generated from params.yaml serving.batching\n"
            "# (soilcast batching-config); the embedded gateway batches with the same numbers.\n"
            f"max_batch_size {{ value: {batching.max_batch_size} }}\n"
            f"batch_timeout_micros {{ value: {batching.batch_timeout_micros} }}\n"
            f"num_batch_threads {{ value: {batching.num_batch_threads} }}\n"
            f"max_enqueued_batches {{ value: {batching.max_enqueued_batches} }}\n")


class Batcher:
    """Merge concurrent ``model.predict(arrays)`` calls; thread-safe, bounded, stoppable."""

    def __init__(self, max_batch_size: int, batch_timeout_micros: int, num_batch_threads: int,
                 max_enqueued_batches: int, start: bool = True) -> None:
        self.max_batch = max_batch_size
        self.timeout = batch_timeout_micros / 1e6
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=max_enqueued_batches * max_batch_size)
        self._workers = [threading.Thread(target=self._work, name=f"soilcast-batch-{i}", daemon=True)
                         for i in range(num_batch_threads)]
        self.batches = self.windows = 0  # model calls made and windows they carried
        self._count = threading.Lock()
        if start:
            self.start()

    def start(self) -> None:
        for t in self._workers:
            t.start()

    def pending(self) -> int:
        """Windows' requests waiting for a worker."""
        return self._queue.qsize()

    def predict(self, model: Any, arrays: dict[str, np.ndarray]) -> np.ndarray:
        n = int(next(iter(arrays.values())).shape[0])
        if n >= self.max_batch:
            return model.predict(arrays)
        item = _Item(model, arrays, n)
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            raise ServingError(ErrorKind.RESOURCE_EXHAUSTED, "queue_full",
                               f"batching queue full ({self._queue.maxsize} windows waiting; "
                               "serving.batching.max_enqueued_batches); retry later") from None
        item.done.wait()
        if item.error is not None:
            raise item.error
        return item.result

    def _collect(self, first: _Item, carry: list[_Item]) -> list[_Item]:
        batch, size = [first], first.n
        deadline = first.enqueued + self.timeout
        while size < self.max_batch:
            try:  # requests already waiting join at once, whatever the deadline (a backlog)
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is None:  # stop: finish this batch, let the worker see the sentinel again
                self._queue.put(None)
                break
            if size + item.n > self.max_batch:
                carry.append(item)  # first of this worker's next batch
                break
            batch.append(item)
            size += item.n
        return batch

    def _run(self, batch: list[_Item]) -> None:
        by_model: dict[int, list[_Item]] = {}
        for item in batch:
            by_model.setdefault(id(item.model), []).append(item)
        for items in by_model.values():
            try:
                names = items[0].arrays.keys()
                merged = {k: np.concatenate([it.arrays[k] for it in items]) for k in names}
                y = items[0].model.predict(merged)
                with self._count:
                    self.batches += 1
                    self.windows += len(y)
                start = 0
                for it in items:
                    it.result, start = y[start : start + it.n], start + it.n
            except BaseException as err:  # every caller hears about it
                for it in items:
                    it.error = err
            finally:
                for it in items:
                    it.done.set()

    def _work(self) -> None:
        carry: list[_Item] = []
        while True:
            first = carry.pop(0) if carry else self._queue.get()
            if first is None:
                self._queue.put(None)  # wake the other workers too
                return
            self._run(self._collect(first, carry))

    def stop(self) -> None:
        self._queue.put(None)
        for t in self._workers:
            t.join()
