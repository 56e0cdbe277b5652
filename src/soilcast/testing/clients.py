"""The third-party clients (tritonclient, grpc_health, the KServe SDK) run out of process.

Why: they live in their own venv (``.venv-clients``, ``make test`` builds it) because they pin
packages the project cannot share, and a user's system calls the gateway from its own
process anyway. :func:`run_client` runs a script there and returns what it printed as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
CLIENTS_VENV = Path(os.environ.get("SOILCAST_CLIENTS_VENV", REPO / ".venv-clients"))
CLIENTS_PYTHON = CLIENTS_VENV / "bin" / "python"
CLIENT_TIMEOUT = 120


def clients_python() -> Path:
    """The clients' interpreter; the calling test is skipped (saying how to build it) if absent."""
    if not CLIENTS_PYTHON.exists():
        pytest.skip(f"{CLIENTS_PYTHON} is missing: the third-party clients' venv; build it with "
                    "`make .venv-clients/.installed` (make test does)")
    return CLIENTS_PYTHON


def run_client(script: str, **env: str) -> Any:
    """Run ``script`` (Python source; its last stdout line is JSON) in the clients' venv with
    ``env`` added to the environment, and return that JSON; a failure raises with its stderr."""
    done = subprocess.run([str(clients_python()), "-c", textwrap.dedent(script)], capture_output=True,
                          text=True, timeout=CLIENT_TIMEOUT, env={**os.environ, **env})
    if done.returncode:
        raise AssertionError(f"client script failed ({done.returncode}):\n{done.stderr[-4000:]}")
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise AssertionError(f"client script printed nothing; stderr:\n{done.stderr[-4000:]}")
    return json.loads(lines[-1])
