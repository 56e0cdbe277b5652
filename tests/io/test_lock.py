"""The lock that keeps overlapping writers apart: a second holder is refused at once with the
first one named, a killed holder leaves no stale lock, and one thread may re-enter."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import soilcast
from soilcast.io.lock import LockBusy, exclusive, lock_path, process_alive, read_holder

SRC = str(Path(soilcast.__file__).parents[1])  # the checkout under test, for the child process

HOLD = """
import sys
from pathlib import Path
from soilcast.io.lock import exclusive
with exclusive(Path(sys.argv[1]), sys.argv[2]):
    print("held", flush=True)
    sys.stdin.read()  # until the parent closes stdin (or kills us)
"""


def hold_in_child(target: Path, what: str) -> subprocess.Popen:
    """A real other process holding the lock of ``target`` until its stdin is closed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))}
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(target), what, "--from-test"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_second_process_is_refused_naming_the_holder(tmp_path):
    target = tmp_path / "data" / "tensors.zarr"  # neither the store nor its folder exist yet
    child = hold_in_child(target, "ingest")
    try:
        with pytest.raises(LockBusy) as err:
            with exclusive(target, "ingest"):
                pytest.fail("entered a lock another process holds")
    finally:
        child.stdin.close()
        child.wait()
    busy = err.value
    assert busy.path == target and busy.what == "ingest" and busy.holder["pid"] == child.pid
    msg = str(busy)
    assert msg.startswith(f"another ingest of {target} is running (pid {child.pid} on host ")
    assert f"since {busy.holder['since']}: -c {target} ingest --from-test)" in msg
    assert msg.endswith("nothing was changed — run again when it has finished")
    assert busy.holder["since"].endswith("+00:00")
    with exclusive(target, "ingest") as path:  # released when the holder finished
        assert path == lock_path(target) == tmp_path / "data" / ".tensors.zarr.lock"
        assert read_holder(path)["pid"] == os.getpid()
    assert read_holder(lock_path(target)) == {}  # nothing recorded once released


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    target = tmp_path / "models"
    child = hold_in_child(target, "model repository change")
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not process_alive(child.pid)
    with exclusive(target, "model repository change"):  # the kernel released it with the process
        pass


def test_another_thread_is_refused_the_same_thread_reenters(tmp_path):
    target = tmp_path / "models"
    refused: list[BaseException] = []

    def second() -> None:
        try:
            with exclusive(target, "model repository change"):
                pass
        except LockBusy as err:
            refused.append(err)

    with exclusive(target, "model repository change"):
        with exclusive(target, "model repository change"):  # an inner call of the same operation
            thread = threading.Thread(target=second)
            thread.start()
            thread.join()
        assert read_holder(lock_path(target))["pid"] == os.getpid()  # the inner exit kept it
        thread = threading.Thread(target=second)
        thread.start()
        thread.join()
    assert len(refused) == 2 and "another model repository change of" in str(refused[0])
    thread = threading.Thread(target=second)
    thread.start()
    thread.join()
    assert len(refused) == 2  # free again


def test_an_unrecorded_holder_is_still_refused_with_the_lock_file_named(tmp_path):
    import fcntl

    target = tmp_path / "tensors.zarr"
    fd = os.open(lock_path(target), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held, nothing written yet
        with pytest.raises(LockBusy, match=r"holder not recorded yet in .*\.tensors\.zarr\.lock"):
            with exclusive(target, "ingest"):
                pass
    finally:
        os.close(fd)


def test_process_alive():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert process_alive(os.getpid()) and not process_alive(dead.pid)
    assert process_alive(0)  # a process group, not a process: never "gone"
