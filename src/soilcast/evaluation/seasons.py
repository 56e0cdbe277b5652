"""The seasons scores and figures are split by (params ``evaluation.seasons``; default IMD's
four: winter JF, pre-monsoon MAM, monsoon JJAS, post-monsoon OND), in one module that evaluate,
the hindcast and the figures import."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def season_rows(valid_time: Any, seasons: Mapping[str, Sequence[int]]) -> dict[str, np.ndarray]:
    """Boolean rows of ``valid_time`` per season (name -> months of the valid day), in the
    order of ``seasons``; config guarantees every month is in exactly one."""
    months = np.asarray(valid_time.month)
    return {name: np.isin(months, list(ms)) for name, ms in seasons.items()}
