"""One measured comparison: the quantile head against a seed ensemble of point forecasts.

Issue 21 asks whether an ensemble calibrates better than quantiles on this data. On the
tensor store of a `make demo` (``--store``, with its forecast archive ``--forecasts``), the
network ``--network`` is trained

* once with the quantile head (``forecast.quantiles`` of params.yaml, pinball loss), and
* ``--members`` times as a point forecast (``forecast.quantiles: [0.5]``, MSE), each with its
  own seed: a seed ensemble, read as quantiles at the same levels (``numpy.quantile`` over the
  members) and scored also as an ensemble (scoringrules' ``crps_ensemble``, fair estimator).

Both are fed as served (the forecast archive's runs when the network reads the lead days'
weather) and scored on the validation and the test years with the same functions evaluation
uses (:mod:`soilcast.evaluation.probabilistic`). Prints one JSON object: per arm and lead the
CRPS, the 80 % coverage, the spread-error ratio, and the CPU seconds of training (the cost
ratio, measured in this run).

    .venv/bin/python benchmarks/quantiles_vs_ensemble.py --store data/processed/tensors.zarr \\
        --forecasts data/processed/forecasts.zarr [--network fc] [--members 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _train(cfg: Any, name: str, store: Path, forecasts: Path, out: Path) -> tuple[Any, float]:
    from soilcast.layout import RunDir
    from soilcast.ml.train import train_model

    t0 = time.process_time()
    train_model(cfg, name, store, RunDir(out), resume=False, verbose=0, forecasts=forecasts)
    return RunDir(out), time.process_time() - t0


def _forecaster(cfg: Any, run: Any, name: str, archive: Any) -> Any:
    from soilcast.evaluation.evaluate import weather_sources
    from soilcast.ml.predict import FeedGroup, KerasForecaster, reads_forecast_weather

    if reads_forecast_weather(json.loads(run.grid.read_text())):
        return FeedGroup(cfg, run, name, {"forecast": weather_sources(cfg, archive)["forecast"]}).forecasters()[
            f"{name}+forecast"]
    return KerasForecaster(cfg, run, name)


def _scores(obs: np.ndarray, q: np.ndarray, levels: tuple, w: np.ndarray, thr: np.ndarray,
            members: np.ndarray | None = None) -> dict[str, list[float | None]]:
    """Per lead: CRPS (quantiles), coverage_80, spread-error ratio, and the ensemble CRPS."""
    from soilcast.evaluation.probabilistic import probabilistic_scores

    out: dict[str, list[float | None]] = {"crps": [], "coverage_80": [], "spread_error_ratio": [], "crps_ensemble": []}
    cells = w > 0
    for k in range(obs.shape[1]):
        o = obs[:, k][:, cells].reshape(-1)
        qq = np.moveaxis(q[:, k][..., cells], 1, -1).reshape(-1, len(levels))
        ww = np.broadcast_to(w[cells], obs[:, k][:, cells].shape).reshape(-1)
        s = probabilistic_scores(o, qq[:, levels.index(0.5)], qq, levels, ww, thr[:, k][:, cells].reshape(-1))
        for key in ("crps", "coverage_80", "spread_error_ratio"):
            out[key].append(float(s[key]))
        out["crps_ensemble"].append(_ensemble_crps(o, members, k, cells, ww) if members is not None else None)
    return out


def _ensemble_crps(o: np.ndarray, members: np.ndarray, k: int, cells: np.ndarray, w: np.ndarray) -> float:
    import scoringrules as sr

    m = np.moveaxis(members[:, :, k][..., cells], 0, -1).reshape(-1, members.shape[0])  # [n, M]
    ok = np.isfinite(o) & np.isfinite(m).all(axis=1)
    c = sr.crps_ensemble(o[ok], m[ok], estimator="fair", backend="numpy")
    return float(np.sum(c * w[ok]) / np.sum(w[ok]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--forecasts", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--network", default="fc")
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    from soilcast.config import load_config
    from soilcast.data.forecast_store import open_forecasts
    from soilcast.evaluation.evaluate import valid_thresholds
    from soilcast.evaluation.metrics import area_weights
    from soilcast.export.products import product_tables
    from soilcast.ml.models import registry
    from soilcast.ml.predict import split_forecasts
    from soilcast.ml.train import load_tensors

    cfg = registry.check(load_config(args.params))
    point = registry.check(load_config(args.params, {"forecast": {"quantiles": [0.5]}}))
    t, archive = load_tensors(cfg, args.store), open_forecasts(args.forecasts)
    tables, levels = product_tables(cfg, t), tuple(cfg.forecast.quantiles)
    result: dict[str, Any] = {"network": args.network, "members": args.members, "levels": list(levels),
                              "leads": list(cfg.window.leads)}
    with tempfile.TemporaryDirectory(prefix="soilcast-qve-") as tmp:
        run, cpu_q = _train(cfg, args.network, args.store, args.forecasts, Path(tmp) / "quantiles")
        fq = _forecaster(cfg, run, args.network, archive)
        runs, cpu_e = [], 0.0
        for i in range(args.members):
            member_cfg = point.model_copy(update={"seed": point.seed + i})
            r, c = _train(member_cfg, args.network, args.store, args.forecasts, Path(tmp) / f"member{i}")
            runs.append(_forecaster(member_cfg, r, args.network, archive))
            cpu_e += c
        for split in ("val", "test"):
            fcs = split_forecasts(cfg, t, {"q": fq, **{f"m{i}": f for i, f in enumerate(runs)}}, split)
            ref = fcs["q"]
            w, thr = area_weights(ref.lat, ref.mask), valid_thresholds(tables, ref)
            members = np.stack([fcs[f"m{i}"].pred for i in range(args.members)])  # [M, N, K, H, W]
            ens_q = np.moveaxis(np.quantile(members, levels, axis=0), 0, 2)  # [N, K, Q, H, W]
            result[split] = {"quantile_head": _scores(ref.obs, ref.quantiles, levels, w, thr),
                             "seed_ensemble": _scores(ref.obs, ens_q, levels, w, thr, members)}
        result["train_cpu_seconds"] = {"quantile_head": cpu_q, "seed_ensemble": cpu_e,
                                       "ratio_ensemble_to_quantile_head": cpu_e / cpu_q if cpu_q else None}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
