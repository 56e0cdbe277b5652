"""One writer at a time: a non-blocking lock beside what an operation reads, changes and writes.

Why: a cron run and a hand run will meet. Each write is atomic on its own
(:mod:`soilcast.io.atomic`), but a read-modify-write is not: two ``soilcast ingest`` of one
store both read it, both append the same days; two ``soilcast promote`` both read the labels
and the later write loses the earlier change. Every such operation holds :func:`exclusive`
on what it changes, so the second one fails fast with :class:`LockBusy`, naming the holder,
before it has changed anything; the caller (the CLI exits ``LOCK_BUSY_EXIT``, 75) runs again
when the first has finished.

The lock is ``flock(2)`` on ``.<name>.lock`` beside the target. The kernel releases it when
the holding process ends, however it ends (``kill -9``, out of memory), so there are no
stale locks to clear by hand: a lock file left behind is harmless and empty. While held, the
file names the holder (pid, host, command line, start time) for the message of whoever is
refused. It is non-blocking on purpose: a cron job queueing behind an hour-long hand run
would pile up; being refused with the holder named lets the operator (or the next tick)
decide. flock is local to one machine: writers on different hosts sharing a network file
system are not kept apart (there, run the writers on one host).

Re-entrant within one thread: code that holds a lock may call a function that takes the
same lock (the export holds the model repository's lock across publish, landing and
pruning, which each take it for callers that call them alone). Another thread or process is
refused. The lock's file descriptor is not inherited by child processes (PEP 446), so a
subprocess never keeps it held.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import shlex
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# EX_TEMPFAIL (sysexits.h): another run holds the lock; nothing was changed, run again later.
# Apart from 1 so a cron wrapper or scheduler can retry it instead of raising an alarm.
BUSY_EXIT = 75

_local = threading.local()  # .held: lock files this thread holds (for re-entry)


class LockBusy(RuntimeError):
    """Another process (or thread) holds the lock on ``path``; nothing was changed.

    ``what`` names the operation ("ingest"), ``holder`` is what the holder recorded (pid,
    host, command, since; empty when it had not written it yet).
    """

    def __init__(self, path: Path, what: str, holder: dict[str, Any]) -> None:
        self.path, self.what, self.holder = Path(path), what, dict(holder)
        super().__init__(busy_message(self.path, what, self.holder))


def lock_path(target: Path) -> Path:
    """The lock file of ``target``: ``.<name>.lock`` in its folder (outside a served folder
    such as the model repository, and named so ``remove_stale_temporaries`` leaves it)."""
    target = Path(target)
    return target.with_name(f".{target.name}.lock")


def busy_message(target: Path, what: str, holder: dict[str, Any]) -> str:
    """"another ingest of X is running (pid P on host H, since T: COMMAND); nothing was changed ..."."""
    if holder.get("pid") is None:
        who = f"holder not recorded yet in {lock_path(target)}"
    else:
        who = (f"pid {holder['pid']} on host {holder.get('host', '?')}, since {holder.get('since', '?')}: "
               f"{holder.get('command', '?')}")
    return f"another {what} of {target} is running ({who}); nothing was changed — run again when it has finished"


def read_holder(path: Path) -> dict[str, Any]:
    """What the holder wrote into the lock file ``path``; empty if nothing (yet) or unreadable."""
    try:
        found = json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def this_holder() -> dict[str, Any]:
    """Who this process is, as a refused process reads it."""
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else ["python"]
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": shlex.join(argv),
            "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def _held() -> set[str]:
    if not hasattr(_local, "held"):
        _local.held = set()
    return _local.held


@contextlib.contextmanager
def exclusive(target: Path, what: str) -> Iterator[Path]:
    """Hold the lock of ``target`` for the block, or raise :class:`LockBusy` at once.

    ``what`` names the operation in the refusal ("ingest", "model repository change"). The
    target itself need not exist; its folder is created. Yields the lock file's path.
    """
    target = Path(target)
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = str(path.resolve())
    if key in _held():  # this thread holds it already (an outer operation)
        yield path
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockBusy(target, what, read_holder(path)) from None
        _held().add(key)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(this_holder(), sort_keys=True) + "\n").encode(), 0)
            yield path
        finally:
            _held().discard(key)
            os.ftruncate(fd, 0)  # still held: no one else's record is wiped
    finally:
        os.close(fd)  # releases the flock


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a zombie or another user's counts as
    alive: a sweep must never take what a live process may still use)."""
    if pid <= 0:
        return True  # not one process: never treated as gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
