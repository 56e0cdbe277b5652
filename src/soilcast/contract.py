"""The serving contract shared by export, evaluation and serving: one place for its names.

The SavedModel's ``serving_default`` takes ``meteo`` [batch, L, H, W, 7] in canonical units
(and ``antecedent_soil_moisture`` [batch, L, H, W] when the model was trained with it) and
returns ``soil_moisture`` [batch, H, W]. Kept free of TensorFlow so light clients import it.
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
    from soilcast.ml.windows import gather

    inputs = {INPUT: gather(X, np.asarray(ends), -seq_len + 1, seq_len).astype(np.float32)}
    if antecedent:
        inputs[ANTECEDENT] = gather(Y[..., 0], np.asarray(ends), -seq_len + 1, seq_len).astype(np.float32)
    return inputs
