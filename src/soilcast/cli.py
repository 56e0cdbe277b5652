"""Command-line shell over the package: one command per step, no logic beyond arguments.

This module only assembles: the command modules register themselves on the shared ``app``
(``soilcast.commands.common``) when imported. Heavy imports (TensorFlow, great-expectations)
happen inside each command so that ``soilcast --help`` stays instant.
"""

from __future__ import annotations

import sys

from soilcast.commands import data, evaluation, ml, operations, pipeline, serving
from soilcast.commands.common import app, quiet_native_logs

COMMAND_MODULES = (data, evaluation, ml, operations, pipeline, serving)


quiet_native_logs()  # at start-up: the console script runs ``app`` itself, not main()


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
