"""Model versions under the model base path (``Layout.models_dir``): reading, validating, hot-reloading.

Mirrors TF Serving's file-system source: every integer sub-directory is a version, others
(staging, ``.rolled_back``) are ignored. Each poll loads versions that appeared and unloads
versions that disappeared. A new version is only served after it loaded, its signature
matched the contract and a warm-up prediction came back finite inside the mask; otherwise it
is *refused* (logged, counted, reported by GetModelStatus) and the versions already loaded
keep serving. The served set is an immutable mapping swapped in one assignment, so a request
that already picked its version finishes on it: swaps drop nothing.

Version labels (TF Serving's ``version_label``) come from ``<models_dir>/models.config``
(:mod:`soilcast.repository.labels`), re-read on every poll: ``stable`` (what a request naming
no version gets) and ``canary`` are independent, ``previous`` is the second-newest loaded
version. Without that file both labels mean the newest version. The embedded gateway keeps
every version present on disk loaded (the exporter prunes to ``export.keep_versions``),
whereas TF Serving loads only the labelled ones.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from soilcast.contract import (
    ANTECEDENT,
    FORECAST_INPUT,
    INPUT,
    LEADS,
    OUTPUT,
    OUTPUT_BY_LEAD,
    PROBABILISTIC_OUTPUTS,
    PRODUCT_OUTPUTS,
    PRODUCTS_SIGNATURE,
    QUANTILE_LEVELS,
    SIGNATURE,
    VALID_DOY,
    WEATHER_PRODUCTS_SIGNATURE,
    WEATHER_SIGNATURE,
    leads_of,
)
from soilcast.layout import Bundle
from soilcast.serving.drift import DriftReference

log = logging.getLogger("soilcast.serving.models")


class ModelLoadError(RuntimeError):
    """A version directory that cannot be served; the message says why."""


class VersionNotFound(LookupError):
    """The requested version or label is not loaded."""


class LabelUnavailable(VersionNotFound):
    """The label a request resolves to points at a version that is not loaded (UNAVAILABLE:
    the request is right, the deployment is not)."""


@dataclass(frozen=True)
class ModelInfo:
    """What the gateway knows about a version without running it (proxy mode uses only this)."""

    version: int
    path: Path
    metadata: dict[str, Any]
    mask: np.ndarray  # [H, W] bool
    inputs: dict[str, tuple[int, ...]]  # name -> shape without batch
    reference: DriftReference | None

    @property
    def variables(self) -> list[str]:
        return list(self.metadata["variables"])

    @property
    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        g = self.metadata["grid"]
        return np.asarray(g["lat"], np.float64), np.asarray(g["lon"], np.float64)

    @property
    def leads(self) -> list[int]:
        """The lead axis of the version's forecasts ([lead_days] for an export from before it)."""
        return leads_of(self.metadata)

    @property
    def by_lead(self) -> bool:
        """Whether the version answers ``soil_moisture_by_lead`` (exports with a lead axis)."""
        return LEADS in self.metadata

    @property
    def outputs(self) -> list[str]:
        """``serving_default``'s outputs, as the version's signature has them."""
        return [OUTPUT, OUTPUT_BY_LEAD] if self.by_lead else [OUTPUT]

    @property
    def quantile_levels(self) -> tuple[float, ...]:
        """The levels of ``forecast_products``' ``quantiles`` axis (metadata
        ``quantile_levels``), () for a point model that names none."""
        return tuple(float(t) for t in self.metadata.get(QUANTILE_LEVELS) or ())

    @property
    def probabilistic(self) -> bool:
        """Whether ``forecast_products`` also answers ``quantiles`` and ``drought_probability``:
        more levels than the median (``[0.5]`` or none is a point model) and the products
        signature (metadata ``products``) to answer them. A version exported without products
        serves ``serving_default`` (the median) whatever its levels."""
        return len(self.quantile_levels) > 1 and bool(self.metadata.get("products"))

    @property
    def product_outputs(self) -> list[str]:
        """``forecast_products``' outputs: the five products, plus the quantiles and the
        drought probability of a probabilistic version."""
        return [*PRODUCT_OUTPUTS, *(PROBABILISTIC_OUTPUTS if self.probabilistic else ())]

    @property
    def weather_input(self) -> dict[str, Any] | None:
        """How ``forecast_with_weather`` takes the lead days' weather (metadata
        ``weather_input``), or None for a version trained without forecast weather."""
        return self.metadata.get("weather_input")

    @property
    def accepts_weather(self) -> bool:
        """Whether the version has ``forecast_with_weather`` (read from the metadata, so
        proxy mode knows it without loading the graph)."""
        return self.weather_input is not None

    @property
    def weather_shape(self) -> tuple[int, ...]:
        """``forecast_meteo`` without batch: [K, H, W, C] (the version's leads and variables)."""
        return (len(self.leads), *self.mask.shape, len(self.variables))

    def with_weather(self) -> "ModelInfo":
        """This info with ``forecast_meteo`` among its inputs: what the weather signatures
        take, so request validation and signature checks run unchanged on it."""
        return replace(self, inputs={**self.inputs, FORECAST_INPUT: self.weather_shape})


def lead_axis(y: Any) -> np.ndarray:
    """Soil moisture as [b, K, H, W]: a one-lead field [b, H, W] (what an export from before
    the lead axis answers) becomes K = 1, so every caller has one path."""
    y = np.asarray(y)
    return y if y.ndim == 4 else y[:, None]


def by_lead_output(outputs: Any) -> np.ndarray:
    """[b, K, H, W] from a ``serving_default`` answer: ``soil_moisture_by_lead`` when the
    version has it, else its one ``soil_moisture`` field."""
    return lead_axis(outputs[OUTPUT_BY_LEAD] if OUTPUT_BY_LEAD in outputs else outputs[OUTPUT])


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelLoadError(f"{path}: missing (every soilcast SavedModel ships it in {path.parent.name}/)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ModelLoadError(f"{path}: not valid JSON: {err}") from None


def read_info(version_dir: Path) -> ModelInfo:
    """Parse the metadata and drift reference beside a SavedModel (no TensorFlow needed)."""
    version_dir = Path(version_dir)
    files = Bundle(version_dir)
    meta = _read_json(files.metadata)
    try:
        lat, lon = meta["grid"]["lat"], meta["grid"]["lon"]
        variables, seq_len = list(meta["variables"]), int(meta["seq_len"])
        mask = np.asarray(meta["mask"], dtype=bool)
    except (KeyError, TypeError, ValueError) as err:
        raise ModelLoadError(f"{files.metadata}: lacks {err}") from None
    if mask.shape != (len(lat), len(lon)):
        raise ModelLoadError(
            f"{version_dir}: mask shape {mask.shape} does not match grid {len(lat)}x{len(lon)}"
        )
    h, w = mask.shape
    inputs = {INPUT: (seq_len, h, w, len(variables))}
    if meta.get(ANTECEDENT):
        inputs[ANTECEDENT] = (seq_len, h, w)
    _check_weather_input(files.metadata, meta, (h, w))
    _check_quantile_levels(files.metadata, meta)
    reference = None
    drift_path = files.drift_reference
    if drift_path.is_file():
        try:
            reference = DriftReference.from_json(_read_json(drift_path), variables, leads_of(meta))
        except (KeyError, ValueError) as err:
            raise ModelLoadError(f"{drift_path}: {err}") from None
    else:
        log.warning("%s: no drift reference; drift monitoring is off for this version", drift_path)
    return ModelInfo(int(version_dir.name), version_dir, meta, mask, inputs, reference)


def _check_weather_input(path: Path, meta: dict[str, Any], grid: tuple[int, int]) -> None:
    """A ``weather_input`` must describe the ``forecast_meteo`` the version's own leads,
    grid and variables imply; anything else would make the gateway validate requests
    against a shape the graph does not take."""
    spec = meta.get("weather_input")
    if spec is None:
        return
    try:
        leads, variables = leads_of(meta), list(meta["variables"])
        want = [None, len(leads), *grid, len(variables)]
        shape = [None if d is None else int(d) for d in spec["shape"]]
        named = (spec["name"], spec.get("dtype", "float32"), [int(k) for k in spec.get("leads", leads)],
                 list(spec.get("variables", variables)))
    except (KeyError, TypeError, ValueError) as err:
        raise ModelLoadError(f"{path}: weather_input lacks {err}") from None
    if shape != want or named != (FORECAST_INPUT, "float32", leads, variables):
        raise ModelLoadError(f"{path}: weather_input {spec} does not match the version: expected "
                             f"{FORECAST_INPUT!r} float32 {want} (leads {leads}, variables {variables})")


def _check_quantile_levels(path: Path, meta: dict[str, Any]) -> None:
    """``quantile_levels`` (when present and not empty) must be ascending in (0, 1) and hold
    the median: the gateway and every client index the quantile axis by them."""
    from soilcast.quantiles import check_levels

    levels = meta.get(QUANTILE_LEVELS)
    if not levels:
        return
    try:
        check_levels(levels)
    except (TypeError, ValueError) as err:
        raise ModelLoadError(f"{path}: {QUANTILE_LEVELS}: {err}") from None


class SignatureCall:
    """One loaded signature answering soil moisture: its own object, because the batcher
    merges calls per object and must never mix requests with and without ``forecast_meteo``."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Soil moisture of every lead [b, K, H, W] (an export from before the lead axis: its
        one ``soil_moisture`` field as K = 1)."""
        import tensorflow as tf

        out = self.fn(**{k: tf.constant(v) for k, v in inputs.items()})
        return by_lead_output({k: v.numpy() for k, v in out.items()})


@dataclass(frozen=True)
class LoadedModel:
    """A servable version: its info plus the loaded ``serving_default`` function (and the
    products / weather signatures the version was exported with)."""

    info: ModelInfo
    fn: Any
    module: Any = field(repr=False)  # keeps the loaded object (and its variables) alive
    products_fn: Any = field(default=None, repr=False)  # ``forecast_products`` when exported
    weather: SignatureCall | None = field(default=None, repr=False)  # ``forecast_with_weather``
    weather_products_fn: Any = field(default=None, repr=False)  # ``forecast_products_with_weather``
    warmup_records: int | None = None  # replayed at load (None: no warm-up file; 0: an empty one)

    @property
    def version(self) -> int:
        return self.info.version

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """``serving_default``'s soil moisture of every lead [b, K, H, W]."""
        return SignatureCall(self.fn).predict(inputs)

    def products_call(self, weather: bool) -> Any:
        """``forecast_products`` (``weather``: ``forecast_products_with_weather``), None when
        the version lacks it."""
        return self.weather_products_fn if weather else self.products_fn

    def predict_products(self, inputs: dict[str, np.ndarray], doy: np.ndarray) -> dict[str, np.ndarray]:
        """Every products output for the grids ``inputs`` and valid days ``doy``; inputs
        carrying ``forecast_meteo`` go to ``forecast_products_with_weather``."""
        import tensorflow as tf

        fn = self.products_call(FORECAST_INPUT in inputs)
        args = {k: tf.constant(v) for k, v in inputs.items()} | {VALID_DOY: tf.constant(doy, tf.int32)}
        return {k: v.numpy() for k, v in fn(**args).items()}


def _check_signature(fn: Any, info: ModelInfo, name: str = SIGNATURE,
                     outputs: list[str] | None = None) -> None:
    """``fn``'s inputs are ``info.inputs`` (float32, ``valid_day_of_year`` int32) and its
    outputs include ``outputs`` (default ``info.outputs``)."""
    import tensorflow as tf

    _args, kwargs = fn.structured_input_signature
    expected = info.inputs  # name -> shape without batch
    if set(kwargs) != set(expected):
        raise ModelLoadError(f"{info.path}: {name} signature inputs {sorted(kwargs)}, expected {sorted(expected)}")
    for arg, spec in kwargs.items():
        want, dtype = (None, *expected[arg]), tf.int32 if arg == VALID_DOY else tf.float32
        if spec.dtype != dtype or tuple(spec.shape.as_list()) not in (want, (None,) * len(want)):
            raise ModelLoadError(f"{info.path}: {name} input {arg!r} is {spec.dtype.name} {spec.shape}, "
                                 f"expected {dtype.name} {list(want)}")
    outputs = info.outputs if outputs is None else outputs
    missing = [o for o in outputs if o not in fn.structured_outputs]
    if missing:
        raise ModelLoadError(f"{info.path}: {name} signature outputs {sorted(fn.structured_outputs)} lack {missing}")


def warmup_inputs(info: ModelInfo) -> dict[str, np.ndarray]:
    """One plausible request: weather (past and, in ``info.inputs``, forecast) at the
    reference means (or zeros) over the whole grid, antecedent soil moisture zero inside the
    mask and NaN outside (as the store holds it)."""
    out = {}
    for name, shape in info.inputs.items():
        x = np.zeros((1, *shape), np.float32)
        weather = name in (INPUT, FORECAST_INPUT)
        if weather and info.reference is not None:
            x[...] = np.asarray([d.mean for d in info.reference.inputs], np.float32)
        if not weather:
            x[:, :, ~info.mask] = np.nan
        out[name] = x
    return out


def load_version(version_dir: Path) -> LoadedModel:
    """Load and vet one version; raise :class:`ModelLoadError` if it must not serve."""
    import tensorflow as tf

    info = read_info(version_dir)
    try:
        module = tf.saved_model.load(str(version_dir))
    except Exception as err:  # TF raises many types for a corrupt SavedModel
        raise ModelLoadError(f"{version_dir}: SavedModel does not load: {type(err).__name__}: {err}") from None
    if SIGNATURE not in module.signatures:
        raise ModelLoadError(f"{version_dir}: no {SIGNATURE!r} signature (has {list(module.signatures)})")
    weather_fn = _weather_signature(module, info)
    model = LoadedModel(info, module.signatures[SIGNATURE], module, module.signatures.get(PRODUCTS_SIGNATURE),
                        None if weather_fn is None else SignatureCall(weather_fn),
                        module.signatures.get(WEATHER_PRODUCTS_SIGNATURE))
    _check_signature(model.fn, info)
    _check_products(model.products_fn, info)
    _warm_up(model.predict, info, SIGNATURE)
    if model.weather is not None:
        _warm_up(model.weather.predict, info.with_weather(), WEATHER_SIGNATURE)
    return replace(model, warmup_records=replay_warmup(model))


def _weather_signature(module: Any, info: ModelInfo) -> Any:
    """``forecast_with_weather`` (None for a version trained without forecast weather), with
    ``forecast_products_with_weather`` checked too; a bundle whose metadata and signatures
    disagree on the weather is refused (the gateway validates requests by the metadata)."""
    fn, products = module.signatures.get(WEATHER_SIGNATURE), module.signatures.get(WEATHER_PRODUCTS_SIGNATURE)
    if (fn is not None) != info.accepts_weather:
        has = "has" if fn is not None else "lacks"
        raise ModelLoadError(f"{info.path}: the SavedModel {has} {WEATHER_SIGNATURE!r} but the metadata's "
                             f"weather_input is {info.weather_input}")
    if products is not None and fn is None:
        raise ModelLoadError(f"{info.path}: {WEATHER_PRODUCTS_SIGNATURE!r} without {WEATHER_SIGNATURE!r}")
    if fn is not None:
        _check_signature(fn, info.with_weather(), WEATHER_SIGNATURE)
    if products is not None:
        doy = {VALID_DOY: (len(info.leads),)}  # one valid day per lead
        _check_signature(products, replace(info.with_weather(), inputs=info.with_weather().inputs | doy),
                         WEATHER_PRODUCTS_SIGNATURE, info.product_outputs)
    return fn


def _check_products(fn: Any, info: ModelInfo) -> None:
    """A probabilistic version's ``forecast_products`` must answer the quantiles and the
    drought probability its metadata promises (clients read them by the metadata)."""
    if fn is None:
        return
    missing = [o for o in info.product_outputs if o not in fn.structured_outputs]
    if missing:
        raise ModelLoadError(f"{info.path}: {PRODUCTS_SIGNATURE} signature outputs {sorted(fn.structured_outputs)} "
                             f"lack {missing} (metadata {QUANTILE_LEVELS}: {list(info.quantile_levels)})")


def _warm_up(predict: Callable[[dict[str, np.ndarray]], np.ndarray], info: ModelInfo, name: str) -> None:
    """One prediction of :func:`warmup_inputs` must come back [1, K, H, W], finite inside
    the mask, before a signature serves."""
    where = f"{info.path}: {name} warm-up prediction"
    try:
        y = predict(warmup_inputs(info))
    except Exception as err:
        raise ModelLoadError(f"{where} failed: {type(err).__name__}: {err}") from None
    want = (1, len(info.leads), *info.mask.shape)
    if y.shape != want:
        raise ModelLoadError(f"{where} has shape {y.shape}, expected {want} (leads {info.leads})")
    if not np.isfinite(y[0][:, info.mask]).all():
        raise ModelLoadError(f"{where} is non-finite in {int((~np.isfinite(y[0][:, info.mask])).sum())} mask values")


def replay_warmup(model: LoadedModel) -> int | None:
    """Replay the version's TF Serving warm-up records (if any) before it serves, as TF
    Serving does with ``--enable_model_warmup``, so the first real request is not the slow
    one; a record that fails or answers non-finite inside the mask refuses the version.

    Returns the records replayed, None when the version has no warm-up file. An EMPTY file
    loads (TF Serving accepts it) but with a WARNING: the version was meant to be warmed up
    and is not, so its first requests are the slow ones.
    """
    import time

    from soilcast.repository.warmup import read_warmup

    info = model.info
    warmup = Bundle(info.path).warmup
    try:
        records = read_warmup(info.path)
    except ValueError as err:
        raise ModelLoadError(f"{info.path}: warm-up file unreadable: {err}") from None
    if not records:
        if not warmup.is_file():
            return None
        log.warning("version %s: warm-up file %s holds no record; the version serves unwarmed "
                    "(its first requests are slow)", info.version, warmup.relative_to(info.path))
        return 0
    t0 = time.perf_counter()
    for i, inputs in enumerate(records):
        if set(inputs) != set(info.inputs):
            raise ModelLoadError(f"{warmup}: record {i} has inputs {sorted(inputs)}, "
                                 f"expected {sorted(info.inputs)}")
        try:
            y = model.predict(inputs)
        except Exception as err:
            raise ModelLoadError(f"{warmup}: record {i} failed: "
                                 f"{type(err).__name__}: {err}") from None
        if not np.isfinite(y[..., info.mask]).all():
            raise ModelLoadError(f"{warmup}: record {i} answered non-finite soil moisture "
                                 "inside the mask")
    log.info("version %s: replayed %d warm-up requests from %s in %.2f s", info.version, len(records),
             warmup.relative_to(info.path), time.perf_counter() - t0)
    return len(records)


def _stamp(version_dir: Path) -> tuple[int, int, int]:
    """Fingerprint of everything under a version: (newest mtime_ns, file count, total bytes).

    A refused version is retried when this changes. Looking at the directory and
    ``saved_model.pb`` alone missed a copy that completed later inside ``variables/`` (a
    non-atomic publish), leaving the version refused for good.
    """
    newest, count, size = version_dir.stat().st_mtime_ns, 0, 0
    for path in version_dir.rglob("*"):
        st = path.stat()
        newest = max(newest, st.st_mtime_ns)
        if path.is_file():
            count, size = count + 1, size + st.st_size
    return newest, count, size


# (event, version, detail): loaded | refused | unloaded, then swapped (newest or -1) per poll
Listener = Callable[[str, int, str], None]


class ModelRepository:
    """The loaded versions of one model, refreshed from disk every ``poll_seconds``."""

    def __init__(self, models_dir: Path, poll_seconds: float, listener: Listener | None = None,
                 loader: Callable[[Path], LoadedModel] = load_version) -> None:
        self.models_dir = Path(models_dir)
        self.poll_seconds = poll_seconds
        self._listener = listener or (lambda *a: None)
        self._loader = loader
        self.served: dict[int, LoadedModel] = {}
        self.refused: dict[int, tuple[tuple[int, int, int], str]] = {}
        self.file_labels: dict[str, int] | None = None
        self._lock = threading.Lock()  # one poll at a time; readers never take it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _on_disk(self) -> dict[int, Path]:
        if not self.models_dir.is_dir():
            return {}
        return {int(p.name): p for p in self.models_dir.iterdir() if p.is_dir() and p.name.isdigit()}

    def _read_labels(self) -> None:
        from soilcast.repository.labels import LabelError, read_labels

        try:
            labels = read_labels(self.models_dir)
        except (LabelError, OSError) as err:  # keep routing with the last good map
            log.error("version labels not updated: %s", err)
            return
        if labels != self.file_labels:
            self._listener("labels", -1, str(labels))
        self.file_labels = labels

    def poll(self) -> None:
        """Load new versions, unload vanished ones, then swap the served set atomically."""
        with self._lock:
            self._read_labels()
            disk = self._on_disk()
            served = {v: m for v, m in self.served.items() if v in disk}
            for v in sorted(set(self.served) - set(served)):
                self._listener("unloaded", v, "removed from disk")
            for v in sorted(set(disk) - set(served)):
                try:
                    stamp = _stamp(disk[v])
                except FileNotFoundError:
                    continue  # vanished between listing and loading
                if self.refused.get(v, (None,))[0] == stamp:
                    continue  # already refused as is; retried only when it changes
                try:
                    served[v] = self._loader(disk[v])
                    self.refused.pop(v, None)
                    self._listener("loaded", v, str(disk[v]))
                    if getattr(served[v], "warmup_records", None) == 0:
                        self._listener("warmup_empty", v, str(disk[v]))
                except ModelLoadError as err:
                    self.refused[v] = (stamp, str(err))
                    self._listener("refused", v, str(err))
            self.refused = {v: r for v, r in self.refused.items() if v in disk}
            self.served = served
            self._listener("swapped", max(served) if served else -1, "")

    def start(self) -> None:
        self.poll()
        self._thread = threading.Thread(target=self._loop, name="soilcast-model-poll", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception:  # keep polling whatever one poll hit
                log.exception("model poll failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def labels(self, served: dict[int, LoadedModel] | None = None) -> dict[str, int]:
        from soilcast.repository.labels import effective_labels

        return effective_labels(self.file_labels, sorted(self.served if served is None else served))

    def label_of(self, version: int) -> str:
        """The label a version serves under ('' if none; ``stable`` wins over ``canary``)."""
        from soilcast.repository.labels import SERVED_LABELS

        labels = self.labels()
        return next((k for k in SERVED_LABELS if labels.get(k) == version), "")

    def resolve(self, version: int | None = None, label: str | None = None) -> LoadedModel:
        """The version a request asks for: by number, by label, else ``stable`` (the newest
        when no labels file exists or it defines no stable). A ``stable`` that points at a
        version not loaded is :class:`LabelUnavailable`: silently serving the newest instead
        served a canary to every client that named nothing."""
        served = self.served  # one read: the set cannot change under this request
        if not served:
            raise VersionNotFound(f"no version loaded yet from {self.models_dir}")
        labels = self.labels(served)
        if label:
            if label not in labels:
                raise VersionNotFound(f"unknown version label {label!r}; available: {labels}")
            version = labels[label]
            if version not in served:
                raise VersionNotFound(f"version label {label!r} points at version {version}, which is "
                                      f"not loaded; available: {sorted(served)}")
        if version is None:
            stable = labels.get("stable")
            if stable is None:
                return served[max(served)]
            if stable not in served:  # never the newest instead: it may be an untried canary
                raise LabelUnavailable(f"version label 'stable' points at version {stable}, which is not "
                                       f"loaded (models.config in {self.models_dir}); a request naming no "
                                       f"version is served by stable only; loaded: {sorted(served)}")
            return served[stable]
        if version not in served:
            raise VersionNotFound(f"version {version} is not loaded; available: {sorted(served)}")
        return served[version]
