"""A damaged model.keras is named as corrupt (not "file not found"), with the command to rerun."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from soilcast.ml.model_io import CorruptModelError
from soilcast.ml.predict import load_network, run_files


def _saved(cfg, name: str):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    path = run_files(cfg, name)["model"]
    path.parent.mkdir(parents=True)
    model.save(path)
    return model, path


def test_intact_model_loads(tiny_cfg):
    model, _ = _saved(tiny_cfg, "fc")
    x = np.ones((1, 3), np.float32)
    np.testing.assert_array_equal(load_network(tiny_cfg, "fc")(x), model(x))


def test_truncated_model_is_named_corrupt_with_the_rerun_command(tiny_cfg):
    _, path = _saved(tiny_cfg, "fc")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CorruptModelError, match=r"model\.keras: the file exists \(\d+ bytes\) but is corrupt: "
                                                r"not a valid zip.*rerun `soilcast train --model fc`"):
        load_network(tiny_cfg, "fc")


def test_damaged_member_is_named_corrupt(tiny_cfg):
    _, path = _saved(tiny_cfg, "gru")
    data = bytearray(path.read_bytes())
    data[60] ^= 0xFF  # inside the first member's data: the zip's directory stays intact
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptModelError, match=r"fails its CRC check.*soilcast train --model gru"):
        load_network(tiny_cfg, "gru")
