"""A lock held by someone else, for tests of overlapping operations (``soilcast.io.lock``).

Why a thread: :func:`soilcast.io.lock.exclusive` is re-entrant within one thread, so a test
holding the lock itself would let its own call through; held by another thread, an
operation started meanwhile meets a running one, deterministically and without the start-up
time of a second process.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from soilcast.io.lock import exclusive


@contextlib.contextmanager
def held_elsewhere(target: Path, what: str) -> Iterator[None]:
    """Hold the lock of ``target`` in another thread for the block."""
    entered, done = threading.Event(), threading.Event()

    def hold() -> None:
        with exclusive(Path(target), what):
            entered.set()
            done.wait()

    thread = threading.Thread(target=hold, name=f"holds {what} of {target}", daemon=True)
    thread.start()
    if not entered.wait(30):
        raise RuntimeError(f"{target}: the lock for {what} was not taken within 30 s (held by another process?)")
    try:
        yield
    finally:
        done.set()
        thread.join()
