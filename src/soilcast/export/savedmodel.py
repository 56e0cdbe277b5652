"""Export the blessed model as a versioned TF Serving SavedModel.

Signatures (the serving contract):
- ``serving_default``: ``meteo`` float32 [batch, L, H, W, C] (one channel per params
  variable) in canonical physical units
  (plus ``antecedent_soil_moisture`` float32 [batch, L, H, W] when the config uses it)
  -> ``soil_moisture_by_lead`` float32 [batch, K, H, W] (K = ``window.leads``, listed in the
  metadata) and ``soil_moisture`` float32 [batch, H, W], the first lead's field (what clients
  of one-lead exports read), in m3/m3, NaN outside the basin mask.
  The dtype is enforced by the signature; the shape by ``tf.ensure_shape`` inside it (TF
  signatures alone do not reject a wrong H or W).
- ``forecast_products``: the same inputs plus ``valid_day_of_year`` int32 [batch, K] (0-based
  day of each lead's valid date on the 366-day leap calendar) -> per lead ``soil_moisture``
  [batch, K, H, W], ``basin_mean`` [batch, K, n_basins] (columns: metadata ``basins``),
  ``anomaly``, ``percentile`` and ``drought_class`` (see :mod:`soilcast.export.products`). A second signature rather than an
  optional input (TF signatures have none), so ``serving_default`` and its clients are
  untouched.
- ``forecast_with_weather`` (a network trained with the lead days' weather only): the inputs
  of ``serving_default`` plus ``forecast_meteo`` float32 [batch, K, H, W, C], the weather
  forecast of the K lead days in canonical units -> the outputs of ``serving_default``.
  ``serving_default`` of such a model answers without a forecast (past weather only).
- ``metadata``: no inputs -> ``metadata`` string scalar holding the metadata JSON.

Files beside the graph (:class:`soilcast.layout.Bundle`): the metadata (same JSON), the
drift reference, the model card and TF Serving's warm-up file (the canary windows; replayed
before a version serves). A new version lands
as the ``canary`` label; ``stable`` keeps the champion until ``soilcast promote``.

Flow of :func:`export_blessed`: read the gate's blessing -> build the physical model ->
write it to a staging directory outside the served base path -> infra-validate it in a fresh
process -> rename it into ``<models_dir>/<next version>`` -> prune old versions.
Every input and output is an argument (:func:`export_blessed`); the layout names the files.

Overlap: a blessed export holds the model repository's lock
(:func:`soilcast.repository.versions.repository_lock`) from its first look at
``models_dir`` (is this model served already? which version number is next?) to the
prune, so a promote, rollback or second export meanwhile fails at once with
:class:`soilcast.io.lock.LockBusy` (``soilcast export`` exits 75) instead of racing it for a
version number or the labels. Under the lock it first removes what killed exports left: their
staging folders beside ``models_dir`` and their infra-validation temp folders of processes
no longer alive (:func:`sweep_leftovers`); the export record lists them under ``swept``.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from soilcast.config import Config
from soilcast.contract import (
    ANTECEDENT,
    FORECAST_INPUT,
    INPUT,
    LEADS,
    OUTPUT,
    OUTPUT_BY_LEAD,
    PRODUCTS_SIGNATURE,
    QUANTILE_LEVELS,
    VALID_DOY,
)
from soilcast.layout import Bundle, RunDir, bundle
from soilcast.records import BundleMetadata, Decision, Leaderboard, RecordError, TrainRecord


def input_shapes(cfg: Config) -> dict[str, tuple[int | None, ...]]:
    """Serving input names and shapes (batch first, None) for this config."""
    h, w = cfg.grid.shape
    L = cfg.window.seq_len
    shapes: dict[str, tuple[int | None, ...]] = {INPUT: (None, L, h, w, len(cfg.variables))}
    if cfg.window.antecedent_soil_moisture:
        shapes[ANTECEDENT] = (None, L, h, w)
    return shapes


def weather_shape(cfg: Config) -> tuple[int | None, ...]:
    """``forecast_meteo`` of ``forecast_with_weather``: [batch, K, H, W, C]."""
    return (None, cfg.window.n_leads, *cfg.grid.shape, len(cfg.variables))


def output_shapes(cfg: Config) -> dict[str, tuple[int | None, ...]]:
    """``serving_default``'s outputs: the first lead's field and every lead's."""
    return {OUTPUT: (None, *cfg.grid.shape), OUTPUT_BY_LEAD: (None, cfg.window.n_leads, *cfg.grid.shape)}


def serving_outputs(y: Any, levels: Any) -> dict[str, Any]:
    """The outputs of ``serving_default`` from the physical model's answer: [b, K, H, W], or
    [b, K, Q, H, W] at quantile ``levels`` (served: the median; the quantiles go out through
    ``forecast_products``)."""
    by_lead = median_of(y, levels)
    return {OUTPUT: by_lead[:, 0], OUTPUT_BY_LEAD: by_lead}


def median_of(y: Any, levels: Any) -> Any:
    """The median [b, K, H, W] of a physical answer ([b, K, Q, H, W] when probabilistic)."""
    return y[:, :, list(levels).index(0.5)] if len(y.shape) == 5 else y


def call_model(model: Any, inputs: dict[str, Any]) -> Any:
    """Call a physical model with named inputs (single-input models take the bare tensor)."""
    if len(model.inputs) == 1:
        return model(inputs[INPUT], training=False)
    return model(inputs, training=False)


def write_savedmodel(
    model: Any, path: Path, cfg: Config, metadata: dict[str, Any], extras: dict[str, str],
    tables: Any = None, weather_model: Any = None,
) -> None:
    """Write ``model`` as a SavedModel with its signatures and the extra files; with
    ``tables`` (:class:`soilcast.export.products.ProductTables`) also ``forecast_products``,
    with ``weather_model`` (the same network taking ``forecast_meteo``) ``forecast_with_weather``."""
    import keras
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"SavedModel export needs KERAS_BACKEND=tensorflow (running {keras.backend.backend()}); "
            "models trained on another backend load fine under tensorflow"
        )
    shapes = input_shapes(cfg)
    specs = [tf.TensorSpec(shape, tf.float32, name=name) for name, shape in shapes.items()]
    names = list(shapes)
    levels = tuple(metadata.get(QUANTILE_LEVELS) or (0.5,))

    def serve(**tensors: Any) -> dict[str, Any]:
        checked = {n: tf.ensure_shape(t, shapes[n]) for n, t in tensors.items()}
        return serving_outputs(tf.cast(call_model(model, checked), tf.float32), levels)

    fn = _named(serve, names)
    meta_text = json.dumps(metadata, sort_keys=True)

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", fn, input_signature=specs)
    if tables is not None:
        _add_products(archive, model, tables, shapes, specs, levels)
    if weather_model is not None:
        _add_weather(archive, weather_model, cfg, shapes, specs, tables, levels)
    archive.add_endpoint("metadata", lambda: {"metadata": tf.constant(meta_text)}, input_signature=[])
    archive.write_out(str(path), verbose=False)
    files = Bundle(Path(path))
    files.extra.mkdir(parents=True, exist_ok=True)
    files.metadata.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    for name, text in extras.items():  # keyed by Bundle attribute: "drift_reference", "card"
        getattr(files, name).write_text(text)


def _add_products(archive: Any, model: Any, tables: Any, shapes: dict, specs: list, levels: tuple,
                  signature: str = PRODUCTS_SIGNATURE) -> None:
    """The ``forecast_products`` endpoint: the served forecast (the median) of every lead
    through the products layer, each lead with its own valid day, and for a probabilistic
    model its ``quantiles`` and ``drought_probability``. ``shapes``/``specs``: the model's
    inputs (with ``forecast_meteo`` for ``forecast_products_with_weather``)."""
    import tensorflow as tf

    from soilcast.contract import N_CALENDAR_DAYS
    from soilcast.export.products import products_layer

    probabilistic = len(levels) > 1
    layer = products_layer(tables, list(levels) if probabilistic else None)
    archive.track(layer)
    names = list(shapes)
    n_leads = int(model.outputs[0].shape[1])

    def products(**tensors: Any) -> dict[str, Any]:
        doy = tensors.pop(VALID_DOY)
        checked = {n: tf.ensure_shape(tensors[n], shapes[n]) for n in names}
        doy = tf.ensure_shape(doy, (None, n_leads))
        with tf.control_dependencies([
            tf.debugging.assert_equal(tf.shape(doy)[0], tf.shape(checked[INPUT])[0],
                                      message=f"{VALID_DOY} needs one row of {n_leads} valid days per window"),
            tf.debugging.assert_non_negative(doy, message=f"{VALID_DOY} must be 0..{N_CALENDAR_DAYS - 1}"),
            tf.debugging.assert_less(doy, N_CALENDAR_DAYS, message=f"{VALID_DOY} must be 0..{N_CALENDAR_DAYS - 1}"),
        ]):
            y = tf.cast(call_model(model, checked), tf.float32)
            return layer(median_of(y, levels), doy, y) if probabilistic else layer(y, doy)

    archive.add_endpoint(signature, _named(products, [*names, VALID_DOY]),
                         input_signature=[*specs, tf.TensorSpec((None, n_leads), tf.int32, name=VALID_DOY)])


def _named(fn: Any, names: list[str]) -> Any:
    """``fn(**tensors)`` as a function of positional arguments called ``names``, so the traced
    signature's keys are the contract's names (``meteo`` ...), not ``args_0``."""
    import inspect

    def call(*args: Any) -> Any:
        return fn(**dict(zip(names, args)))

    call.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names])
    return call


def _add_weather(archive: Any, model: Any, cfg: Config, shapes: dict, specs: list, tables: Any,
                 levels: tuple) -> None:
    """``forecast_with_weather`` (and ``forecast_products_with_weather`` with ``tables``):
    ``serving_default``'s (``forecast_products``') inputs and outputs, plus the lead days'
    weather forecast ``forecast_meteo``."""
    import tensorflow as tf

    from soilcast.contract import FORECAST_INPUT, WEATHER_PRODUCTS_SIGNATURE, WEATHER_SIGNATURE

    archive.track(model)
    all_shapes = {**shapes, FORECAST_INPUT: weather_shape(cfg)}
    all_specs = [*specs, tf.TensorSpec(weather_shape(cfg), tf.float32, name=FORECAST_INPUT)]

    def serve(**tensors: Any) -> dict[str, Any]:
        checked = {n: tf.ensure_shape(t, all_shapes[n]) for n, t in tensors.items()}
        return serving_outputs(tf.cast(model(checked, training=False), tf.float32), levels)

    archive.add_endpoint(WEATHER_SIGNATURE, _named(serve, list(all_shapes)), input_signature=all_specs)
    if tables is not None:
        _add_products(archive, model, tables, all_shapes, all_specs, levels, WEATHER_PRODUCTS_SIGNATURE)


def build_metadata(
    cfg: Config,
    tensors: Any,
    model_name: str,
    version: int,
    test_metrics: dict[str, Any],
    record: TrainRecord | None = None,
) -> dict[str, Any]:
    """Everything a client or monitor needs to use the model without reading the repo."""
    attrs = tensors.attrs
    return {
        "schema_version": BundleMetadata.SCHEMA_VERSION,
        "model": model_name,
        "version": int(version),
        "model_name": cfg.serving.model_name,
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "inputs": {n: list(s) for n, s in input_shapes(cfg).items()},
        "output": {**{n: list(s) for n, s in output_shapes(cfg).items()}, "units": cfg.target.canonical_units},
        "variables": list(tensors.variables),
        "units": {**dict(attrs.get("units", {})), OUTPUT: cfg.target.canonical_units},
        "target": cfg.target.name,
        "seq_len": cfg.window.seq_len,
        LEADS: list(cfg.window.leads),
        "antecedent_soil_moisture": cfg.window.antecedent_soil_moisture,
        "grid": {
            "lat": [float(v) for v in np.asarray(tensors.lat)],
            "lon": [float(v) for v in np.asarray(tensors.lon)],
            "res": cfg.grid.res,
        },
        "mask": np.asarray(tensors.mask, bool).astype(int).tolist(),
        "basin_names": dict(attrs.get("basin_names", {})),
        "basins": basin_order(tensors),
        "data_hashes": dict(attrs.get("input_hashes", {})),
        "split": cfg.split.model_dump(mode="json"),
        "precision": record.precision if record else cfg.training.precision,  # as trained
        "test_metrics": test_metrics,
        "training_record": record.to_json() if record else {},
    }


def basin_order(tensors: Any) -> list[dict[str, Any]]:
    """Sorted basin ids inside the mask with their names: the columns of ``basin_mean``."""
    names = {str(k): v for k, v in dict(tensors.attrs.get("basin_names", {})).items()}
    ids = np.unique(np.asarray(tensors.basin_id)[np.asarray(tensors.mask, bool)])
    return [{"id": int(b), "name": names.get(str(int(b)), f"basin {int(b)}")} for b in ids if b != 0]


def served_levels(cfg: Config, model: Any) -> list[float]:
    """The quantile levels of the physical ``model`` to export: ``forecast.quantiles`` when it
    answers [b, K, Q, H, W] (checked against Q), the median alone for [b, K, H, W]."""
    shape = model.outputs[0].shape
    if len(shape) != 5:
        return [0.5]
    if shape[2] != len(cfg.forecast.quantiles):
        raise RuntimeError(f"the model answers {shape[2]} quantiles, params' forecast.quantiles has "
                           f"{len(cfg.forecast.quantiles)} ({cfg.forecast.quantiles}): retrain or fix params.yaml")
    return list(cfg.forecast.quantiles)


def products_metadata(cfg: Config, tables: Any, basins: list[dict[str, Any]], levels: list[float]) -> dict[str, Any]:
    """How a client reads ``forecast_products``: its input, the basin column order, the
    drought classes and where the tables came from."""
    from soilcast.contract import (
        BASIN_MEAN,
        D1_OR_WORSE_PERCENTILE,
        DROUGHT_CLASSES,
        DROUGHT_PROBABILITY,
        N_CALENDAR_DAYS,
        NO_DROUGHT,
        PROBABILISTIC_OUTPUTS,
        PRODUCT_OUTPUTS,
        QUANTILES,
    )
    from soilcast.export.products import N_QUANTILE_BINS, QUANTILE_DAYS, QUANTILE_LEVELS

    return {
        "signature": PRODUCTS_SIGNATURE,
        "extra_input": {VALID_DOY: {"dtype": "int32", "shape": [None, cfg.window.n_leads],
                                    "range": [0, N_CALENDAR_DAYS - 1],
                                    "calendar": "0-based day of each lead's valid date on a 366-day leap calendar"}},
        "outputs": list(PRODUCT_OUTPUTS) + (list(PROBABILISTIC_OUTPUTS) if len(levels) > 1 else []),
        "basins": basins,  # the columns of basin_mean and drought_probability, in order
        BASIN_MEAN: "cos(latitude) area-weighted mean over each basin's mask cells",
        "climatology": {"years": list(cfg.split.train_years), "window_days": cfg.climatology.window_days},
        "percentile": {"bins": N_QUANTILE_BINS, "bin_days": QUANTILE_DAYS,
                       "levels": [float(v) for v in QUANTILE_LEVELS], "table_bytes": tables.nbytes},
        "drought_classes": {f"D{k}": list(v) for k, v in DROUGHT_CLASSES.items()} | {"none": NO_DROUGHT},
        **({DROUGHT_PROBABILITY: (
            f"per lead and basin: the expected share of the basin's area (cos-latitude weighted mask cells) at or "
            f"below the {D1_OR_WORSE_PERCENTILE:g}th percentile of the valid day's training-years distribution "
            "(D1 or worse), each cell's probability read from its quantiles through a piecewise-linear CDF "
            "(soilcast.quantiles.quantile_cdf)"), QUANTILES: {"levels": list(levels), "shape": "[batch, K, Q, H, W]"}}
           if len(levels) > 1 else {}),
    }


def load_physical_models(cfg: Config, run: RunDir, name: str) -> tuple[Any, Any]:
    """The trained network wrapped in physical units (the ML area's graphs, not rebuilt here):
    (``serving_default``'s model, ``forecast_with_weather``'s or None), one network."""
    from soilcast.ml.predict import physical_pair

    return physical_pair(cfg, run, name)


def weather_metadata(cfg: Config, run: RunDir) -> dict[str, Any]:
    """How a client sends the lead days' weather to ``forecast_with_weather``."""
    from soilcast.contract import FORECAST_INPUT, FORECAST_WEATHER, WEATHER_SIGNATURE

    return {
        FORECAST_WEATHER: json.loads(run.grid.read_text())[FORECAST_WEATHER],
        "weather_input": {
            "signature": WEATHER_SIGNATURE, "name": FORECAST_INPUT, "dtype": "float32",
            "shape": list(weather_shape(cfg)), "leads": list(cfg.window.leads), "variables": cfg.variable_names,
            "aggregation": "daily mean (totals for accumulated variables) over each valid day 00-24 UTC, "
                           "canonical units, on the model grid",
        },
    }


def rtol_for(cfg: Config, precision: str | None = None) -> float:
    """Tolerance of served vs in-memory outputs: looser when training ran in bfloat16/float16
    (``precision``: the run record's resolved policy; the config's setting when unknown)."""
    from soilcast.ml.precision import resolve_precision

    used = precision or resolve_precision(cfg.training.precision)
    return cfg.export.rtol_float32 if used == "float32" else cfg.export.rtol_bfloat16


def canary_inputs(cfg: Config, tensors: Any, with_weather: bool = False) -> dict[str, np.ndarray]:
    """``cfg.export.canary_windows`` test windows spread over the test years (with the
    observed weather of their lead days as ``forecast_meteo`` when ``with_weather``)."""
    from soilcast.forecasting import perfect_weather
    from soilcast.ml.windows import evenly_spaced, load_test_block, window_inputs

    block, ends = load_test_block(cfg, tensors)
    ends = evenly_spaced(ends, cfg.export.canary_windows)
    out = window_inputs(cfg, block, ends, cfg.window.antecedent_soil_moisture)
    if with_weather:
        out[FORECAST_INPUT] = perfect_weather(block.X, ends, cfg.window.leads)
    return out


def expected_outputs(model: Any, weather_model: Any, canaries: dict[str, np.ndarray],
                     levels: Any) -> dict[str, np.ndarray]:
    """What infra validation must get back from the staged SavedModel: ``serving_default``'s
    outputs, and ``forecast_with_weather``'s (named by :func:`infra.weather_key`) if any."""
    from soilcast.export.infra import weather_key

    plain = {k: v for k, v in canaries.items() if k != FORECAST_INPUT}
    out = {k: np.asarray(v, np.float32) for k, v in serving_outputs(call_model(model, plain), levels).items()}
    if weather_model is not None:
        fed = serving_outputs(weather_model(canaries, training=False), levels)
        out.update({weather_key(k): np.asarray(v, np.float32) for k, v in fed.items()})
    return out


def model_fingerprint(cfg: Config, run: RunDir, name: str, tensors: Any) -> dict[str, Any]:
    """What makes an export unique: the trained file, its data and the serving contract."""
    from soilcast.data.store import file_sha256

    model_file = run.model
    return {
        "model": name,
        "model_sha256": file_sha256(model_file) if model_file.is_file() else None,
        "data_hashes": dict(tensors.attrs.get("input_hashes", {})),
        "inputs": {n: list(s) for n, s in input_shapes(cfg).items()},
    }


def serving_same_model(models_dir: Path, fingerprint: dict[str, Any]) -> int | None:
    """The served version if it already holds exactly this model (re-running is a no-op)."""
    from soilcast.repository.versions import latest_version, read_metadata

    version = latest_version(models_dir)
    if version is None or fingerprint.get("model_sha256") is None:
        return None
    try:
        served = read_metadata(bundle(models_dir, version).root).get("fingerprint")
    except (FileNotFoundError, ValueError):
        return None
    return version if served == fingerprint else None


def rolled_back_same_model(models_dir: Path, fingerprint: dict[str, Any]) -> int | None:
    """A rolled-back version holding exactly this model: an operator withdrew it, so a
    re-run of the pipeline must not quietly push it again."""
    from soilcast.repository.versions import ROLLED_BACK, read_metadata

    root = Path(models_dir) / ROLLED_BACK
    for d in sorted(root.iterdir(), reverse=True) if root.is_dir() else []:
        try:
            if d.name.isdigit() and read_metadata(d).get("fingerprint") == fingerprint:
                return int(d.name)
        except (FileNotFoundError, ValueError):
            continue
    return None


def sweep_leftovers(models_dir: Path) -> list[Path]:
    """What killed exports left, removed: staging folders of ``models_dir`` and infra
    validation's temp folders of dead processes. Call under the repository lock."""
    from soilcast.export.infra import remove_dead_temporaries
    from soilcast.repository.versions import remove_stale_staging

    return remove_stale_staging(models_dir) + remove_dead_temporaries()


def export_blessed(
    cfg: Config,
    blessing_file: Path,
    metrics_file: Path,
    runs: Mapping[str, RunDir],
    tensors_store: Path,
    models_dir: Path,
    out_file: Path,
    inference_service: Path | None = None,
) -> Path | None:
    """Export, validate and publish the gate's winner (its run folder from ``runs``) into
    the TF Serving base path ``models_dir``; record what happened in ``out_file`` and write the
    KServe InferenceService of the labelled versions into ``inference_service`` (default:
    beside the record, :func:`soilcast.export.kserve.inference_service_file`), whatever happened.

    Returns the version directory, or None with a 'skipped' record when the gate did not
    bless or the model was rolled back earlier. Re-exporting the model the newest version
    already serves is a no-op that returns that version. A blessed export holds the
    repository lock throughout (another change meanwhile: ``LockBusy``, nothing changed).
    """
    from soilcast.export.kserve import inference_service_file, write_inference_service
    from soilcast.io.atomic import atomic_write_json
    from soilcast.repository import versions

    blessing = Decision.read(Path(blessing_file), "run the 'gate' stage first")
    models_dir = Path(models_dir)
    isvc = Path(inference_service) if inference_service is not None else inference_service_file(out_file)
    if not blessing.blessed or blessing.winner is None:
        atomic_write_json(out_file, {
            "status": "skipped: not blessed", "winner": blessing.winner,
            "reasons": blessing.reasons, "version": None, "path": None,
        })
        write_inference_service(cfg, models_dir, isvc)  # what still serves
        return None
    with versions.repository_lock(models_dir):
        swept = sweep_leftovers(models_dir)
        target = _export_winner(cfg, blessing, Path(metrics_file), runs, Path(tensors_store), models_dir,
                                Path(out_file), swept)
        write_inference_service(cfg, models_dir, isvc)  # the labels just set
        return target


def _write_record(out_file: Path, record: dict[str, Any], swept: list[Path]) -> None:
    """The export record, with the leftovers of killed exports this run removed."""
    from soilcast.io.atomic import atomic_write_json

    atomic_write_json(out_file, {**record, "swept": [str(p) for p in swept]})


def _export_winner(cfg: Config, blessing: Decision, metrics_file: Path, runs: Mapping[str, RunDir],
                   tensors_store: Path, models_dir: Path, out_file: Path, swept: list[Path]) -> Path | None:
    """:func:`export_blessed` of a blessed winner; the caller holds the repository lock."""
    from soilcast.data.store import open_tensors
    from soilcast.export import infra
    from soilcast.export.card import render_card
    from soilcast.export.drift_reference import drift_reference
    from soilcast.repository import versions

    winner = blessing.winner
    name = blessing.network or winner  # the network behind the winning scores (feed apart)
    metrics = Leaderboard.read(Path(metrics_file))
    if winner not in metrics.scored():
        raise RecordError(f"{metrics_file}: the gate's winner {winner!r} was not scored "
                          "(the metrics changed after the gate: rerun 'evaluate' and 'gate')")
    if name not in runs:
        raise FileNotFoundError(f"blessed winner {name}: no run folder given (have {sorted(runs)})")
    run = runs[name]
    record = TrainRecord.read(run.record) if run.record.is_file() else None
    tensors = open_tensors(tensors_store, load=False)
    fingerprint = model_fingerprint(cfg, run, name, tensors)
    same = serving_same_model(models_dir, fingerprint)
    if same is not None:
        _write_record(out_file, {
            "status": f"skipped: version {same} already serves this model", "model": name,
            "version": same, "path": str(bundle(models_dir, same).root),
        }, swept)
        return bundle(models_dir, same).root
    withdrawn = rolled_back_same_model(models_dir, fingerprint)
    if withdrawn is not None:
        _write_record(out_file, {
            "status": f"skipped: this model was rolled back as version {withdrawn}", "model": name,
            "version": None, "path": None,
            "hint": f"retrain, or delete {models_dir / versions.ROLLED_BACK / str(withdrawn)} to allow it again",
        }, swept)
        return None
    model, weather_model = load_physical_models(cfg, run, name)
    version = versions.next_version(models_dir)
    from soilcast.export.products import product_tables

    tables = product_tables(cfg, tensors)
    metadata = build_metadata(cfg, tensors, name, version, metrics.scored()[winner].overall, record)
    metadata["fingerprint"] = fingerprint
    metadata["served_feed"] = blessing.served_feed or "past"
    if weather_model is not None:
        metadata.update(weather_metadata(cfg, run))
    if [b["id"] for b in metadata["basins"]] != tables.basin_ids.tolist():
        raise RuntimeError(f"basin order {metadata['basins']} differs from the products' {tables.basin_ids}")
    metadata[QUANTILE_LEVELS] = served_levels(cfg, model)
    metadata["products"] = products_metadata(cfg, tables, metadata["basins"], metadata[QUANTILE_LEVELS])
    metadata = BundleMetadata.from_json(metadata, f"metadata of version {version}").to_json()  # typed, checked
    extras = {
        "drift_reference": json.dumps(drift_reference(cfg, tensors), indent=1) + "\n",
        "card": render_card(cfg, metadata, metrics, blessing),
    }
    canaries = canary_inputs(cfg, tensors, with_weather=weather_model is not None)
    expected = expected_outputs(model, weather_model, canaries, tuple(metadata[QUANTILE_LEVELS]))
    staging = versions.export_staging_dir(models_dir)  # outside the served base path
    try:
        staged = staging / str(version)
        write_savedmodel(model, staged, cfg, metadata, extras, tables, weather_model)
        from soilcast.repository.warmup import write_warmup

        write_warmup(staged, {k: v for k, v in canaries.items() if k != FORECAST_INPUT},
                     cfg.serving.model_name)  # replayed before it serves
        report = infra.validate(
            staged, canaries, expected, rtol_for(cfg, record.precision if record else None), input_shapes(cfg),
            output_shapes(cfg)
        )
        target = versions.publish(models_dir, staged, version)
        labels = versions.land_as_canary(models_dir, version, cfg.serving.model_name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    pruned = versions.prune(models_dir, cfg.export.keep_versions)
    _write_record(out_file, {
        "status": "exported", "model": name, "version": version, "path": str(target),
        "infra_validation": report, "pruned_versions": pruned, "labels": labels,
    }, swept)
    return target
