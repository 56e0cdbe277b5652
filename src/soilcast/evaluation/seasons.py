"""The seasons scores and plots are split by, in one module both evaluate and plots import."""

from __future__ import annotations

from typing import Any

import numpy as np

MONSOON_MONTHS = (6, 7, 8, 9)  # JJAS: the Indian south-west monsoon, by definition
SEASONS = ("monsoon_jjas", "rest")


def season_rows(valid_time: Any) -> dict[str, np.ndarray]:
    """Boolean rows of ``valid_time`` per season (monsoon JJAS, the rest of the year)."""
    monsoon = np.isin(np.asarray(valid_time.month), MONSOON_MONTHS)
    return {"monsoon_jjas": monsoon, "rest": ~monsoon}
