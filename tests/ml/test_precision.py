"""``training.precision: auto`` picks bf16 only where the hardware has bf16 units, and
training builds, logs and records the resolved policy (never the word ``auto``)."""

from __future__ import annotations

import json
import logging

import keras
import pytest

from soilcast.ml.precision import read_cpu_flags, resolve_precision, with_resolved_precision
from soilcast.testing.config import tiny_config
from soilcast.testing.synthetic import write_synthetic_store

SPR = {"fpu", "avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}
GENOA = {"avx2", "avx512f", "avx512_bf16"}  # AVX-512 with bf16 dot products, no AMX
AMX_ONLY = {"avx2", "avx512f", "amx_tile", "amx_bf16"}
ROME = {"fpu", "avx", "avx2", "fma"}  # AVX2 only: bf16 is emulated, 3x slower


@pytest.mark.parametrize("flags", [SPR, GENOA, AMX_ONLY])
def test_auto_picks_bfloat16_on_cpus_with_bf16_units(flags):
    assert resolve_precision("auto", cpu_flags=flags, gpus=[]) == "mixed_bfloat16"


@pytest.mark.parametrize("flags", [ROME, set(), {"avx512f", "avx512_fp16", "amx_int8"}])
def test_auto_keeps_float32_without_bf16_units(flags):
    assert resolve_precision("auto", cpu_flags=flags, gpus=[]) == "float32"


@pytest.mark.parametrize(("gpus", "expected"), [
    ([(8, 0)], "mixed_bfloat16"),          # A100
    (["9.0", "9.0"], "mixed_bfloat16"),    # H100 x2, as JAX reports it
    ([(7, 5)], "float32"),                 # T4: no bf16 tensor cores
    ([(8, 6), (7, 0)], "float32"),         # a mixed box trains at the slowest GPU's pace
    (["garbage"], "float32"),              # unknown capability is not trusted
])
def test_auto_on_gpus_follows_their_compute_capability(gpus, expected):
    # the CPU flags do not matter once GPUs are visible: the model trains on the GPUs
    assert resolve_precision("auto", cpu_flags=SPR, gpus=gpus) == expected
    assert resolve_precision("auto", cpu_flags=ROME, gpus=gpus) == expected


@pytest.mark.parametrize("setting", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_an_explicit_setting_is_kept_whatever_the_hardware(setting):
    for flags in (SPR, ROME):
        assert resolve_precision(setting, cpu_flags=flags, gpus=[]) == setting
    assert resolve_precision(setting, cpu_flags=ROME, gpus=[(9, 0)]) == setting


def test_an_unknown_setting_is_named_in_the_error():
    with pytest.raises(ValueError, match=r"training\.precision: 'bf16'"):
        resolve_precision("bf16", cpu_flags=SPR, gpus=[])


def test_cpu_flags_are_read_from_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu avx2 amx_bf16 avx512_bf16\n\n"
                    "processor\t: 1\nflags\t\t: fpu avx2 amx_bf16 avx512_bf16\n")
    assert read_cpu_flags(info) == {"fpu", "avx2", "amx_bf16", "avx512_bf16"}
    assert resolve_precision("auto", cpu_flags=read_cpu_flags(info), gpus=[]) == "mixed_bfloat16"


def test_no_cpuinfo_means_float32(tmp_path):
    flags = read_cpu_flags(tmp_path / "missing")
    assert flags == set()
    assert resolve_precision("auto", cpu_flags=flags, gpus=[]) == "float32"


def test_params_yaml_defaults_to_auto(tmp_path):
    # the tiny config pins float32; the real params.yaml says auto
    cfg = tiny_config(tmp_path, {"training": {"precision": "auto"}})
    resolved = with_resolved_precision(cfg)
    assert resolved.training.precision == resolve_precision("auto")
    assert resolved.training.precision in ("float32", "mixed_bfloat16")
    assert resolved.to_dict() | {"training": None} == cfg.to_dict() | {"training": None}
    assert cfg.training.precision == "auto"  # the input config is not changed


def test_training_under_auto_builds_logs_and_records_the_resolved_policy(tmp_path, caplog):
    cfg = tiny_config(tmp_path, {"training": {"precision": "auto", "epochs": 1, "steps_per_epoch": 2}})
    write_synthetic_store(cfg)
    from soilcast.ml.models.weather_head import body_of
    from soilcast.testing.stages import train_model

    expected = resolve_precision("auto")
    with caplog.at_level(logging.INFO, logger="soilcast.ml.precision"):
        out = train_model(cfg, "fc", verbose=0)
    assert f"auto -> {expected}" in caplog.text
    rec = json.loads((out / "record.json").read_text())
    assert rec["precision"] == expected
    model = body_of(keras.saving.load_model(out / "model.keras", compile=False))  # the network in its heads
    hidden = [layer for layer in model.layers if layer.weights][0]
    assert hidden.dtype_policy.name == expected
