"""The forecast-error model: errors grow with lead, stay physical and are reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from soilcast.forecast_error import perturb, smooth_noise


def _truth(cfg, n=16, k=7, h=12, w=12):
    """Smooth true weather in canonical units (rain patches, warm temperatures)."""
    rng = np.random.default_rng(5)
    x = np.zeros((n, k, h, w, len(cfg.variables)), np.float32)
    for c, spec in enumerate(cfg.variables):
        lo, hi = spec.physical_range
        base = smooth_noise(rng, (n, k, h, w), 2.0)
        if spec.forecast_error == "rain":
            x[..., c] = np.maximum(base, 0) * 20.0
        else:
            x[..., c] = np.clip((lo + hi) / 2 + base, lo, hi)
    return x


def test_errors_grow_with_lead_and_values_stay_physical(tiny_cfg):
    cfg = tiny_cfg
    leads = (1, 2, 3, 4, 5, 6, 7)
    truth = _truth(cfg)
    sd = np.ones(len(cfg.variables), np.float32)
    fc = perturb(truth, cfg.variables, leads, cfg.forecast_error, np.random.default_rng(0), sd)
    assert fc.shape == truth.shape and np.isfinite(fc).all()
    for c, spec in enumerate(cfg.variables):
        lo, hi = spec.physical_range
        assert fc[..., c].min() >= lo and fc[..., c].max() <= hi, spec.name
        err = np.sqrt(((fc[..., c] - truth[..., c]) ** 2).mean(axis=(0, 2, 3, 4) if fc.ndim == 6 else (0, 2, 3)))
        assert err[-1] > 1.5 * err[0] > 0, (spec.name, err)
    rain = [c for c, s in enumerate(cfg.variables) if s.forecast_error == "rain"]
    # the rain factor has mean 1: a forecast neither wets nor dries on average (the early
    # leads, where the sample of smooth log-normal factors is tight enough to tell)
    many = _truth(cfg, n=200, k=7)
    wet = perturb(many, cfg.variables, leads, cfg.forecast_error, np.random.default_rng(1), sd)
    assert wet[:, :3, ..., rain].mean() == pytest.approx(many[:, :3, ..., rain].mean(), rel=0.1)


def test_the_same_generator_gives_the_same_forecast_and_bad_shapes_are_refused(tiny_cfg):
    cfg, truth = tiny_cfg, _truth(tiny_cfg, n=2)
    sd = np.ones(len(cfg.variables), np.float32)
    leads = tuple(range(1, 8))
    a = perturb(truth, cfg.variables, leads, cfg.forecast_error, np.random.default_rng(3), sd)
    b = perturb(truth, cfg.variables, leads, cfg.forecast_error, np.random.default_rng(3), sd)
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="leads"):
        perturb(truth, cfg.variables, (1, 2), cfg.forecast_error, np.random.default_rng(3), sd)
