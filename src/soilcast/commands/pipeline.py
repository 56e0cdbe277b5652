"""CLI commands for the pipeline area (thin: parse arguments, call the package, report)."""

from __future__ import annotations

from soilcast.cli import app, pipeline_app, ParamsOpt, _cfg, _fail  # noqa: F401
