"""The serving contract module is light: a client imports it without TensorFlow or Keras."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from tests.conftest import REPO


def test_contract_imports_no_tensorflow_or_keras():
    code = ("import sys, json, soilcast.contract; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO / "src"), "PATH": ""}, cwd=REPO)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_serving_inputs_cut_the_windows_ending_at_each_day():
    from soilcast.contract import ANTECEDENT, INPUT, serving_inputs

    X = np.arange(20, dtype=np.float32)[:, None, None, None] * np.ones((1, 2, 3, 7), np.float32)
    Y = 100 + X[..., :1]
    got = serving_inputs(X, Y, [5, 9], seq_len=3, antecedent=True)
    np.testing.assert_array_equal(got[INPUT][:, :, 0, 0, 0], [[3, 4, 5], [7, 8, 9]])
    np.testing.assert_array_equal(got[ANTECEDENT][:, :, 1, 2], [[103, 104, 105], [107, 108, 109]])
    assert got[INPUT].dtype == np.float32 and got[INPUT].shape == (2, 3, 2, 3, 7)
