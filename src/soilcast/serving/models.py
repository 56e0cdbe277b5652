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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from soilcast.contract import (
    ANTECEDENT,
    INPUT,
    LEADS,
    OUTPUT,
    OUTPUT_BY_LEAD,
    PRODUCTS_SIGNATURE,
    SIGNATURE,
    VALID_DOY,
    leads_of,
)
from soilcast.layout import Bundle
from soilcast.serving.drift import DriftReference

log = logging.getLogger("soilcast.serving.models")


class ModelLoadError(RuntimeError):
    """A version directory that cannot be served; the message says why."""


class VersionNotFound(LookupError):
    """The requested version or label is not loaded."""


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


@dataclass(frozen=True)
class LoadedModel:
    """A servable version: its info plus the loaded ``serving_default`` function."""

    info: ModelInfo
    fn: Any
    module: Any = field(repr=False)  # keeps the loaded object (and its variables) alive
    products_fn: Any = field(default=None, repr=False)  # ``forecast_products`` when exported

    @property
    def version(self) -> int:
        return self.info.version

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Soil moisture of every lead [b, K, H, W] (an export from before the lead axis: its
        one ``soil_moisture`` field as K = 1)."""
        import tensorflow as tf

        out = self.fn(**{k: tf.constant(v) for k, v in inputs.items()})
        return by_lead_output({k: v.numpy() for k, v in out.items()})

    def predict_products(self, inputs: dict[str, np.ndarray], doy: np.ndarray) -> dict[str, np.ndarray]:
        """Every ``forecast_products`` output for the grids ``inputs`` and valid days ``doy``."""
        import tensorflow as tf

        args = {k: tf.constant(v) for k, v in inputs.items()} | {VALID_DOY: tf.constant(doy, tf.int32)}
        return {k: v.numpy() for k, v in self.products_fn(**args).items()}


def _check_signature(fn: Any, info: ModelInfo) -> None:
    import tensorflow as tf

    _args, kwargs = fn.structured_input_signature
    if set(kwargs) != set(info.inputs):
        raise ModelLoadError(f"{info.path}: signature inputs {sorted(kwargs)}, expected {sorted(info.inputs)}")
    for name, spec in kwargs.items():
        want = (None, *info.inputs[name])
        if spec.dtype != tf.float32 or tuple(spec.shape.as_list()) not in (want, (None,) * len(want)):
            raise ModelLoadError(
                f"{info.path}: input {name!r} is {spec.dtype.name} {spec.shape}, expected float32 {list(want)}"
            )
    missing = [o for o in info.outputs if o not in fn.structured_outputs]
    if missing:
        raise ModelLoadError(f"{info.path}: signature outputs {sorted(fn.structured_outputs)} lack {missing}")


def warmup_inputs(info: ModelInfo) -> dict[str, np.ndarray]:
    """One plausible request: weather at the reference means (or zeros) over the whole grid,
    antecedent soil moisture zero inside the mask and NaN outside (as the store holds it)."""
    out = {}
    for name, shape in info.inputs.items():
        x = np.zeros((1, *shape), np.float32)
        if name == INPUT and info.reference is not None:
            x[...] = np.asarray([d.mean for d in info.reference.inputs], np.float32)
        if name != INPUT:
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
    model = LoadedModel(info, module.signatures[SIGNATURE], module, module.signatures.get(PRODUCTS_SIGNATURE))
    _check_signature(model.fn, info)
    try:
        y = model.predict(warmup_inputs(info))
    except Exception as err:
        raise ModelLoadError(f"{version_dir}: warm-up prediction failed: {type(err).__name__}: {err}") from None
    want = (1, len(info.leads), *info.mask.shape)
    if y.shape != want:
        raise ModelLoadError(f"{version_dir}: warm-up prediction has shape {y.shape}, expected {want} "
                             f"(leads {info.leads})")
    if not np.isfinite(y[0][:, info.mask]).all():
        raise ModelLoadError(f"{version_dir}: warm-up prediction is non-finite in "
                             f"{int((~np.isfinite(y[0][:, info.mask])).sum())} mask values")
    replay_warmup(model)
    return model


def replay_warmup(model: LoadedModel) -> int:
    """Replay the version's TF Serving warm-up records (if any) before it serves, as TF
    Serving does with ``--enable_model_warmup``, so the first real request is not the slow
    one; a record that fails or answers non-finite inside the mask refuses the version."""
    import time

    from soilcast.repository.warmup import read_warmup

    info = model.info
    warmup = Bundle(info.path).warmup
    try:
        records = read_warmup(info.path)
    except ValueError as err:
        raise ModelLoadError(f"{info.path}: warm-up file unreadable: {err}") from None
    if not records:
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
        labels = self.labels()
        return next((k for k in ("stable", "canary", "previous") if labels.get(k) == version), "")

    def resolve(self, version: int | None = None, label: str | None = None) -> LoadedModel:
        """The version a request asks for: by number, by label, else ``stable`` (newest when
        no labels file exists or stable is not loaded)."""
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
            return served[stable] if stable in served else served[max(served)]
        if version not in served:
            raise VersionNotFound(f"version {version} is not loaded; available: {sorted(served)}")
        return served[version]
