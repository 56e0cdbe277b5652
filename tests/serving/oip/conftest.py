"""One gateway on the default two-input stand-in, shared by the OIP adapter tests (read-only)."""

from __future__ import annotations

import numpy as np
import pytest

from soilcast.testing.config import tiny_config
from soilcast.testing.protocols import publish_two_input, two_inputs
from soilcast.testing.serving import gateway

MAX_MESSAGE_MB = 1
MAX_CONCURRENT = 4  # below the 16 clients of the mixed-protocol test, so the limit is exercised


@pytest.fixture(scope="package")
def served(tmp_path_factory):
    cfg = tiny_config(tmp_path_factory.mktemp("oip"), {"serving": {"max_message_mb": MAX_MESSAGE_MB, "max_concurrent_rpcs": MAX_CONCURRENT}})
    publish_two_input(cfg, 1)
    with gateway(cfg, drift=False) as gw:
        yield gw


@pytest.fixture(scope="package")
def request_arrays(served):
    """The default request (one window), the same for every protocol."""
    return two_inputs(served.cfg, np.random.default_rng(24))
