"""The gateway's off-the-request-path queues (drift monitoring, payload log): hand an item to
a bounded queue without ever blocking a request, and wait for a queue to drain.

Why shared: both workers must drop (and count) rather than slow a request when they fall
behind, and both need a bounded wait for tests, benchmarks and shutdown.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any


def offer(q: queue.Queue, item: Any, on_drop: Callable[[], Any] | None) -> bool:
    """Queue ``item`` if there is room; else call ``on_drop`` (a counter) and return False."""
    try:
        q.put_nowait(item)
        return True
    except queue.Full:
        if on_drop:
            on_drop()
        return False


def drained(q: queue.Queue, timeout: float, wake: threading.Event | None = None) -> bool:
    """Wait up to ``timeout`` s until every queued item is done (``task_done``); ``wake``
    nudges a worker that batches on a timer."""
    done = threading.Event()

    def waiter() -> None:
        q.join()
        done.set()

    threading.Thread(target=waiter, daemon=True).start()
    if wake is not None:
        wake.set()
    return done.wait(timeout)
