"""A real Prometheus for the monitoring tests: started on a free port, scraping given targets
every second with the repository's alert rules, queried over its HTTP API.

The binaries come from the system (``apt-get install -y prometheus``, which brings
``promtool`` too); :func:`require` names a missing one with how to install it, so a test never
skips the monitoring checks silently.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

INSTALL = ("install it: `apt-get install -y prometheus` (Debian/Ubuntu; `make test` does this when run as "
           "root), or put the Prometheus release binaries on PATH")


def require(binary: str) -> str:
    """The path of ``binary`` on PATH; FileNotFoundError naming how to install it."""
    path = shutil.which(binary)
    if path is None:
        raise FileNotFoundError(f"{binary} not found on PATH: {INSTALL}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    """A running Prometheus on 127.0.0.1:``port`` (see :func:`prometheus`)."""

    def __init__(self, port: int, proc: subprocess.Popen, log: Path) -> None:
        self.port, self.proc, self.log = port, proc, log

    def api(self, path: str, **params: Any) -> dict[str, Any]:
        """The JSON answer of ``/api/v1/<path>``, errors included (a bad query answers 400
        with ``status: error`` and the parser's message)."""
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?" + urllib.parse.urlencode(params, doseq=True)
        try:
            body = urllib.request.urlopen(url, timeout=5).read()
        except urllib.error.HTTPError as err:
            body = err.read()
        return json.loads(body)

    def answer(self, promql: str) -> dict[str, Any]:
        """The whole answer of an instant query (``status``, ``data`` or ``error``)."""
        return self.api("query", query=promql)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The result of an instant query; an error answer raises ValueError with its message."""
        answer = self.answer(promql)
        if answer.get("status") != "success":
            raise ValueError(f"{promql}: {answer.get('errorType')}: {answer.get('error')}")
        return answer["data"]["result"]

    def wait_for(self, promql: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        """The first non-empty result of ``promql``, polled each second (scrapes, rule
        evaluations and rate() windows take a few); [] after ``timeout`` seconds."""
        deadline, result = time.monotonic() + timeout, []
        while not result and time.monotonic() < deadline:
            self.alive()
            try:
                result = self.query(promql)
            except OSError:  # not listening yet
                result = []
            if not result:
                time.sleep(1)
        return result

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"prometheus exited {self.proc.returncode}: {self.log.read_text()[-4000:]}")


@contextlib.contextmanager
def prometheus(workdir: Path, targets: dict[str, Sequence[str]], rule_files: Sequence[Path] = (),
               interval: str = "1s") -> Iterator[Prometheus]:
    """A Prometheus scraping ``targets`` ({job: [host:port, ...]}) every ``interval`` with
    ``rule_files``, its config and TSDB under ``workdir``; stopped on exit. Ready (answering
    queries) when entered."""
    binary = require("prometheus")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(f) for f in rule_files],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(hosts)}]}
                           for job, hosts in targets.items()],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port, log = free_port(), workdir / "prometheus.log"  # a file, not a pipe: a full pipe would stall it
    with log.open("w") as out:
        proc = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=out)
    try:
        server = Prometheus(port, proc, log)
        if not server.wait_for("vector(1)", timeout=60):
            raise RuntimeError("prometheus did not answer within 60 s")
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=30)
