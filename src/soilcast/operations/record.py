"""Recording an issued forecast: into the archive, and into the status the gateway exports
(its label's latest forecast), under the operations lock: the one way in for ``soilcast
forecast`` and the daily run."""

from __future__ import annotations

from typing import Any

from soilcast.operations.archive import Appended, append, archive_entry, open_archive, operations_lock
from soilcast.operations.realised import refresh_status
from soilcast.operations.table import read_table


def archive_forecast(cfg: Any, layout: Any, issued: Any, tensors: Any, server: str) -> Appended:
    """Append ``issued`` and refresh the realised-skill status (its latest forecast), under
    the operations lock: the one way in for ``soilcast forecast`` and the daily run."""
    ops = layout.operations
    entry = archive_entry(cfg, issued, tensors, server)
    with operations_lock(ops.root):
        done = append(ops.archive, entry)
        refresh_status(cfg, layout, open_archive(ops.archive), read_table(ops.verification),
                       str(tensors.time[-1].date()))
    return done
