"""The serving contract shared by export, evaluation and serving: one place for its names.

The SavedModel's ``serving_default`` takes ``meteo`` [batch, L, H, W, 7] in canonical units
(and ``antecedent_soil_moisture`` [batch, L, H, W] when the model was trained with it) and
returns ``soil_moisture`` [batch, H, W] (m3/m3, NaN outside the basin mask, within the
target's physical range). ``meteo`` carries real weather over the whole grid, inside and
outside the mask. Kept free of TensorFlow and Keras (numpy only) so light clients import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

SIGNATURE = "serving_default"
INPUT = "meteo"
ANTECEDENT = "antecedent_soil_moisture"
OUTPUT = "soil_moisture"


def serving_inputs(X: Any, Y: Any, ends: Sequence[int], seq_len: int, antecedent: bool) -> dict[str, np.ndarray]:
    """Physical-unit request tensors for the windows ending (inclusive) at each of ``ends``."""
    ends = np.asarray(ends)
    inputs = {INPUT: _windows(X, ends, seq_len)}
    if antecedent:
        inputs[ANTECEDENT] = _windows(Y[..., 0], ends, seq_len)
    return inputs


def _windows(arr: Any, ends: np.ndarray, seq_len: int) -> np.ndarray:
    """[N, seq_len, ...] float32: ``arr[t-seq_len+1 : t+1]`` for each ``t`` in ``ends``."""
    return np.stack([np.asarray(arr[t - seq_len + 1 : t + 1], dtype=np.float32) for t in ends])
