"""Typed, validated configuration loaded from ``params.yaml``.

``params.yaml`` is the only place that holds values: the models below declare types and
constraints but no defaults, so a knob can never silently differ between DVC, Kubeflow and
the CLI. Tests derive small configs from the same file with :func:`load_config` overrides.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from soilcast.metric_names import METRIC_NAMES, RANKABLE

DEFAULT_PARAMS = Path("params.yaml")


class ConfigError(ValueError):
    """A params file that cannot be used; the message names the file and the key."""


def _yaml_date(value: Any) -> Any:
    """YAML gives a date unquoted and a string quoted: accept both, and nothing else (no ints)."""
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"expected a date YYYY-MM-DD, got {value!r}") from None
    return value


# Strict types everywhere (``epochs: true`` or ``"8"`` is an error, not 1 or 8), except where
# YAML/JSON cannot give the Python type: paths come as strings, pairs as lists, dates as either.
YamlDate = Annotated[dt.date, BeforeValidator(_yaml_date)]
LaxPath = Annotated[Path, Strict(False)]
FloatPair = Annotated[tuple[float, float], Strict(False)]  # the items stay strict
YearPair = Annotated[tuple[int, int], Strict(False)]


# allow_inf_nan=False: no number of the config may be NaN or infinite. A NaN bound compares
# False with everything (``valid_range: [.nan, 340.0]`` would let any value through) and an
# infinite threshold switches its check off; nothing in params.yaml needs either.
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


StrictSection = _Strict  # base of every params section, also the networks' own (registry)


class Period(_Strict):
    start: YamlDate
    end: YamlDate

    @model_validator(mode="after")
    def _ordered(self) -> "Period":
        if self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")
        return self

    @property
    def years(self) -> list[int]:
        return list(range(self.start.year, self.end.year + 1))

    @property
    def n_days(self) -> int:
        return (self.end - self.start).days + 1


class Paths(_Strict):
    raw_dir: LaxPath
    interim_dir: LaxPath
    processed: LaxPath
    forecasts: LaxPath  # the weather forecast runs on the grid (sources.forecast), zarr
    artifacts_dir: LaxPath
    models_dir: LaxPath


class GridSpec(_Strict):
    """A regular lat/lon grid described by its cell centres."""

    lat_min: float = Field(ge=-90, le=90)
    lat_max: float = Field(ge=-90, le=90)
    lon_min: float = Field(ge=-180, le=360)
    lon_max: float = Field(ge=-180, le=360)
    res: float = Field(gt=0, le=10)

    @model_validator(mode="after")
    def _ordered(self) -> "GridSpec":
        if self.lat_max <= self.lat_min:
            raise ValueError("lat_max must be greater than lat_min")
        if self.lon_max <= self.lon_min:
            raise ValueError("lon_max must be greater than lon_min")
        for lo, hi, axis in ((self.lat_min, self.lat_max, "lat"), (self.lon_min, self.lon_max, "lon")):
            steps = (hi - lo) / self.res
            if abs(steps - round(steps)) > 1e-6:
                raise ValueError(f"{axis} span {hi - lo} is not a whole number of res={self.res} cells")
        return self

    def _axis(self, lo: float, hi: float) -> "list[float]":
        n = int(round((hi - lo) / self.res)) + 1
        return [round(lo + i * self.res, 10) for i in range(n)]

    @property
    def lats(self) -> list[float]:
        return self._axis(self.lat_min, self.lat_max)

    @property
    def lons(self) -> list[float]:
        return self._axis(self.lon_min, self.lon_max)

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) = (len(lats), len(lons)), from the spans (no axis is built: cheap for any res)."""
        return (int(round((self.lat_max - self.lat_min) / self.res)) + 1,
                int(round((self.lon_max - self.lon_min) / self.res)) + 1)


class DemoForecastArchive(_Strict):
    """The demo's archive of weather forecasts: one GRIB2 file per month holding that month's
    00 UTC runs (the demo truth plus ``forecast_error`` drawn with ``seed``)."""

    years: YearPair                      # init days of these years (inclusive)
    step_hours: int = Field(ge=1, le=24)  # output interval of the runs
    bits_per_value: int = Field(ge=8, le=24)  # GRIB simple packing precision
    margin_deg: float = Field(ge=0)      # cut-out around the target grid (like a user's area)
    seed: int

    @model_validator(mode="after")
    def _ordered(self) -> "DemoForecastArchive":
        if self.years[1] < self.years[0]:
            raise ValueError(f"years: end year {self.years[1]} is before start year {self.years[0]}")
        return self


class DemoConfig(_Strict):
    seed: int
    met_grid: GridSpec
    sm_grid: GridSpec
    valid_time_years: list[int]
    india_outline: LaxPath
    n_regions: int = Field(ge=4)
    forecast_archive: DemoForecastArchive


RegridMethod = Literal["conservative", "linear", "nearest"]
# none: standardised as is; log1p: log(1 + max(x, 0)) first (heavy-tailed, mostly-zero inputs
# such as precipitation). Applied by soilcast.ml.scaling, in training and inside the export.
Transform = Literal["none", "log1p"]
# How a weather forecast of this variable errs (soilcast.forecast_error): rain = log-normal
# multiplicative error plus displacement in space and time; noise = additive smooth noise.
ForecastErrorKind = Literal["rain", "noise"]


class VariableSpec(_Strict):
    """One field read from raw files. Everything that differs between variables is a key
    here, so code never special-cases a variable by its name."""

    name: str
    source_name: str
    source_units: str
    canonical_units: str
    accumulated: bool
    regrid_method: RegridMethod
    valid_range: FloatPair
    # What the value can physically be, in canonical units: the gateway refuses requests (and
    # never serves soil moisture) outside it. valid_range is in source units, for raw files.
    physical_range: FloatPair
    transform: Transform  # before standardisation (inputs; the target is min-max scaled)
    forecast_error: ForecastErrorKind  # weather inputs only (the target is never forecast)
    colormap: str = Field(min_length=1)  # matplotlib colour map of its maps (plots)
    # keys that change how results look, not what is computed (trained runs stay valid)
    PRESENTATION: ClassVar[tuple[str, ...]] = ("colormap",)

    def science_dict(self) -> dict[str, Any]:
        """The spec without its presentation keys: what a trained run depends on."""
        return self.model_dump(mode="json", exclude=set(self.PRESENTATION))

    @model_validator(mode="after")
    def _range(self) -> "VariableSpec":
        if self.valid_range[1] <= self.valid_range[0]:
            raise ValueError(f"valid_range of {self.name} is empty")
        if self.physical_range[1] <= self.physical_range[0]:
            raise ValueError(f"physical_range of {self.name} is empty")
        return self


AccumulationStamp = Literal["end_of_period", "period_start"]


class _RawFolder(_Strict):
    """Files ``<paths.raw_dir>/<folder>/<pattern>``: the folder must lie under raw_dir."""

    folder: str
    pattern: str

    @model_validator(mode="after")
    def _relative(self) -> "_RawFolder":
        if Path(self.folder).is_absolute() or ".." in Path(self.folder).parts or not self.folder.strip("./"):
            raise ValueError(f"folder {self.folder!r} must be a sub-folder of paths.raw_dir")
        return self


class SourceSpec(_RawFolder):
    """One product's files: ``<paths.raw_dir>/<folder>/<pattern>`` and how it stamps totals.

    ``accumulation_stamp`` (for ``accumulated: true`` variables): ``end_of_period`` = a day's
    total is stamped at the next day's 00 UTC (ERA5 / ERA5-Land hourly data summed to days),
    ``period_start`` = on the day itself (CDS "daily statistics" products).
    """

    accumulation_stamp: AccumulationStamp


class ForecastSource(_RawFolder):
    """Weather forecast runs (GRIB2 or NetCDF): ``<paths.raw_dir>/<folder>/<pattern>``, one
    or many 00 UTC runs per file, steps every few hours to at least ``max(window.leads)`` days.
    Variables are found by their cfgrib names (= ``source_name``), accumulations from the
    run start (ECMWF) or in buckets (GFS) are turned into day totals."""

    # true: train on these runs (a reforecast archive covering the training years) instead of
    # the reanalysis weather of the lead days with forecast_error applied (perfect prognosis)
    train_on_archive: bool


class Sources(_Strict):
    met: SourceSpec
    target: SourceSpec
    forecast: ForecastSource | None  # null: no archive (perfect-weather scores only)


class Basins(_Strict):
    path: LaxPath
    id_field: str
    name_field: str
    cell_rule: Literal["centre", "fraction"]
    min_fraction: float = Field(gt=0, le=1)


class Validate(_Strict):
    max_nan_fraction: float = Field(ge=0, le=1)
    report_dir: LaxPath


class Preprocess(_Strict):
    time_chunk_days: int = Field(ge=1)
    fill_rule: Literal["fail", "nearest_time"]


class Regrid(_Strict):
    # share of each target cell's area the source grid's cells must cover (1.0: to its edges)
    min_coverage: float = Field(gt=0, le=1)


class Split(_Strict):
    train_years: YearPair
    val_years: YearPair
    test_years: YearPair

    @model_validator(mode="after")
    def _chronological(self) -> "Split":
        for name in ("train_years", "val_years", "test_years"):
            lo, hi = getattr(self, name)
            if hi < lo:
                raise ValueError(f"{name}: end year {hi} is before start year {lo}")
        if not (self.train_years[1] < self.val_years[0] and self.val_years[1] < self.test_years[0]):
            raise ValueError("splits must be chronological and disjoint: train < val < test")
        return self


class Window(_Strict):
    seq_len: int = Field(ge=1)
    # Days after the init day t that one model forecasts (valid days t + lead), ascending.
    # One model per network serves them all: its output head has one channel per lead.
    leads: list[int] = Field(min_length=1)
    antecedent_soil_moisture: bool
    # increment: networks predict Y[t+lead] - Y[t] (scaled by its training-years spread) and
    # the graph adds the last antecedent value back, so a zero output is persistence.
    # state: networks predict the level itself (the paper's formulation).
    target: Literal["increment", "state"]
    # none: past weather only. perfect: networks also read the weather of the lead days, trained
    # on the reanalysis weather itself. forecast: the same, with forecast_error applied in
    # training (or sources.forecast's runs when train_on_archive) so they learn how far to trust it.
    forecast_weather: Literal["none", "perfect", "forecast"]

    @model_validator(mode="before")
    @classmethod
    def _replaced_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and "lead_days" in data:
            raise ValueError(
                f"lead_days ({data['lead_days']!r}) was replaced by leads, a list of lead days "
                "one model forecasts (e.g. leads: [1, 2, 3, 4, 5, 6, 7]; [1] is the old lead_days: 1)"
            )
        return data

    @field_validator("leads")
    @classmethod
    def _ascending(cls, leads: list[int]) -> list[int]:
        if any(k < 1 for k in leads) or list(leads) != sorted(set(leads)):
            raise ValueError(f"leads must be distinct whole days >= 1 in ascending order (got {leads})")
        return leads

    @property
    def max_lead(self) -> int:
        """The longest lead: a window needs this many days after its init day."""
        return self.leads[-1]

    @property
    def uses_forecast_weather(self) -> bool:
        """Networks read the lead days' weather as a second input (``forecast_weather`` not none)."""
        return self.forecast_weather != "none"

    @property
    def n_leads(self) -> int:
        """Width of every network's output head (one channel per lead)."""
        return len(self.leads)

    @model_validator(mode="after")
    def _increment_needs_antecedent(self) -> "Window":
        if self.target == "increment" and not self.antecedent_soil_moisture:
            raise ValueError(
                "target: increment adds the forecast change to the last observed soil moisture, "
                "so it needs antecedent_soil_moisture: true (use target: state for the paper's "
                "weather-only inputs)"
            )
        return self


class Scaling(_Strict):
    target_range: FloatPair
    # window.target increment: this many training-years standard deviations of the change
    # map to 1 in the networks' output space
    increment_sd: float = Field(gt=0)

    @model_validator(mode="after")
    def _inside_tanh(self) -> "Scaling":
        lo, hi = self.target_range
        if not (-1 < lo < hi < 1):
            raise ValueError("target_range must lie strictly inside tanh's (-1, 1)")
        return self


# The networks' own sections (``models.<name>``) are typed by the params class each network
# registers with (``soilcast.ml.models.registry``): this module stays free of keras, so it
# keeps them as plain mappings and ``registry.check`` validates them in a second phase.
NetworkSections = dict[str, dict[str, Any]]


class Training(_Strict):
    models: list[str] = Field(min_length=1)  # registered network names (registry.check)
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    steps_per_epoch: int = Field(ge=0)  # 0 = one pass over the split
    validation_steps: int = Field(ge=0)
    learning_rate: float = Field(gt=0)
    warmup_steps: int = Field(ge=0)  # linear warm-up, then cosine decay to 0 over the budget
    precision: Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"]  # auto: soilcast.ml.precision
    patch_size: int = Field(ge=0)


class LeadGrowth(_Strict):
    """A quantity that grows linearly with lead: ``lead_1 + per_day * (lead - 1)``."""

    lead_1: float = Field(ge=0)
    per_day: float = Field(ge=0)

    def at(self, lead: int) -> float:
        """The value at ``lead`` days (never below 0; lead 0 = the run's own day)."""
        return max(0.0, self.lead_1 + self.per_day * (lead - 1))


class ForecastError(_Strict):
    """How a weather forecast errs, by lead (soilcast.forecast_error): applied to the weather of
    the lead days in perfect-prognosis training and by the demo to write its forecast archive."""

    length_cells: float = Field(gt=0)  # spatial correlation length of the errors, grid cells
    rain_log_sd: LeadGrowth            # sd of log(forecast / true) of a day's rain
    rain_shift: LeadGrowth             # probability a day's rain is displaced by one cell
    rain_timing: LeadGrowth            # probability it falls a day early or late
    noise_sd: LeadGrowth               # other variables: additive noise, x training-years sd
    # share of training windows that see no forecast (so serving_default, without one, is a
    # trained past-weather forecast and not an untrained corner of the network)
    dropout: float = Field(ge=0, lt=1)

    def probability(self, growth: LeadGrowth, lead: int) -> float:
        """A probability that grows with lead, capped at 1."""
        return min(1.0, growth.at(lead))


class ForecastHead(_Strict):
    """The layers every network reads the lead days' weather with (ml.models.weather_head)."""

    filters: int = Field(ge=1)
    kernel_size: int = Field(ge=1)


class QuantileHead(_Strict):
    """The layers that spread every network's median into ordered quantiles (ml.models.quantile_head)."""

    filters: int = Field(ge=1)
    kernel_size: int = Field(ge=1)


class Forecast(_Strict):
    """What one forecast is: the median and, with more levels, quantiles around it (the
    quantile axis; ``[0.5]`` alone is a point forecast trained with the MSE)."""

    quantiles: list[float] = Field(min_length=1)
    quantile_head: QuantileHead
    # weight of the median channel's MSE added to the pinball loss (0: pure quantile
    # regression). Soil-moisture changes are skewed (rain jumps up, slow drying down), so the
    # conditional median alone forecasts the level worse in RMSE than the mean does.
    median_mse_weight: float = Field(ge=0)

    @field_validator("quantiles")
    @classmethod
    def _levels(cls, levels: list[float]) -> list[float]:
        from soilcast.quantiles import check_levels

        return list(check_levels(levels))

    @property
    def probabilistic(self) -> bool:
        return len(self.quantiles) > 1


class Climatology(_Strict):
    window_days: int = Field(ge=1)


class LinearReference(_Strict):
    """Per-cell ridge regression of the target on the last ``lags`` days of every input."""

    lags: int = Field(ge=1)
    ridge: float = Field(ge=0)


class Gate(_Strict):
    primary_metric: str  # a registered error metric (soilcast.metric_names.RANKABLE)
    # the winner's validation MSE skill against the best benchmark reference at each lead
    # (the best of persistence, climatology, damped persistence there) must reach this at
    # EVERY lead
    min_skill_vs_best_reference: float
    max_regression: float = Field(ge=0)
    # a probabilistic winner: validation CRPS skill against the best probabilistic reference
    # (lowest validation CRPS at that lead) at least this at EVERY lead, and the coverage of
    # its central coverage_interval within coverage_tolerance of nominal at every lead
    min_crps_skill_vs_best_reference: float
    coverage_interval: float = Field(gt=0, lt=1)
    coverage_tolerance: float = Field(gt=0, lt=1)

    @model_validator(mode="before")
    @classmethod
    def _replaced_keys(cls, data: Any) -> Any:
        old = [k for k in ("min_skill_vs_climatology", "min_skill_vs_persistence") if isinstance(data, dict) and k in data]
        if old:
            raise ValueError(f"{', '.join(old)} replaced by min_skill_vs_best_reference: the winner must beat the "
                             "best of persistence, climatology and damped persistence at every lead")
        return data

    @field_validator("primary_metric")
    @classmethod
    def _rankable(cls, name: str) -> str:
        """The gate picks the LOWEST value and re-scores the champion without references, so
        only an error metric that needs no reference forecast can rank candidates."""
        if name not in RANKABLE:
            what = "not a registered metric" if name not in METRIC_NAMES else "cannot rank candidates"
            raise ValueError(f"{what}: the gate ranks by an error (lower is better, no reference "
                             f"forecast needed), one of {', '.join(RANKABLE)}")
        return name


# KServe's storage schemes (its storage initializer); a pvc:// URI names a claim (a DNS-1123 label).
KSERVE_STORAGE = re.compile(r"(pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/\S*)?|(s3|gs|hdfs|webhdfs|https|oci)://\S+)")
K8S_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"  # a Kubernetes quantity: 500m, 2, 4Gi


class KServe(_Strict):
    """The KServe ``InferenceService`` the export writes for the labelled versions
    (:mod:`soilcast.export.kserve`): where KServe's TF Serving runtime finds the model
    repository, which runtime, how much of the traffic a new export (canary) gets."""

    namespace: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    storage_uri: str  # the model base path (paths.models_dir) as KServe reads it
    runtime_version: str = Field(min_length=1)  # TF Serving image tag, as serving/Dockerfile.serving
    canary_traffic_percent: int = Field(ge=1, le=99)
    cpu_request: str = Field(pattern=K8S_QUANTITY)
    memory_request: str = Field(pattern=K8S_QUANTITY)
    memory_limit: str = Field(pattern=K8S_QUANTITY)

    @field_validator("storage_uri")
    @classmethod
    def _kserve_uri(cls, uri: str) -> str:
        if not KSERVE_STORAGE.fullmatch(uri):
            raise ValueError(f"storage_uri {uri!r}: expected pvc://<claim>[/<path>] (or s3://, gs://, "
                             "hdfs://, webhdfs://, https://, oci:// ...), the model base path KServe mounts")
        return uri


class Export(_Strict):
    keep_versions: int = Field(ge=1)
    rtol_float32: float = Field(gt=0)
    rtol_bfloat16: float = Field(gt=0)
    canary_windows: int = Field(ge=1)
    kserve: KServe


class Batching(_Strict):
    """Server-side batching (embedded gateway, and TF Serving's batching_parameters_file)."""

    enabled: bool
    max_batch_size: int = Field(ge=1)
    batch_timeout_micros: int = Field(ge=0)
    num_batch_threads: int = Field(ge=1)
    max_enqueued_batches: int = Field(ge=1)


class PayloadLog(_Strict):
    """A sample of the gateway's Predict requests and responses as JSON lines, rotated by size."""

    enabled: bool
    sample_rate: float = Field(gt=0, le=1)
    dir: LaxPath
    max_mb: int = Field(ge=1)  # one file's size before it rotates
    backups: int = Field(ge=1)  # rotated files kept


class Serving(_Strict):
    host: str
    grpc_port: int = Field(ge=0, le=65535)
    rest_port: int = Field(ge=0, le=65535)  # TF Serving's REST API + /v2/health
    metrics_port: int = Field(ge=0, le=65535)
    model_name: str
    poll_seconds: float = Field(gt=0)
    max_message_mb: int = Field(ge=1)
    max_batch: int = Field(ge=1)  # windows per Predict; also bounds a request's decoded size
    max_workers: int = Field(ge=1)
    max_concurrent_rpcs: int = Field(ge=1)
    drift_window: int = Field(ge=2)
    psi_bins: int = Field(ge=2)
    psi_epsilon: float = Field(gt=0, lt=1)
    drift_sample_cells: int = Field(ge=1)
    drift_interval_seconds: float = Field(gt=0)
    shutdown_grace_seconds: float = Field(ge=0)
    drift_min_windows: int = Field(ge=1)  # no drift value before this many live windows
    client_timeout_seconds: float = Field(gt=0)  # gRPC deadline of forecast, hindcast and daily
    payload_log: PayloadLog
    batching: Batching

    @model_validator(mode="after")
    def _drift_sample_fits(self) -> "Serving":
        if self.drift_min_windows > self.drift_window:
            raise ValueError(f"drift_min_windows ({self.drift_min_windows}) exceeds drift_window "
                             f"({self.drift_window}): drift would never be published")
        return self


class Operations(_Strict):
    """The daily operation: which labels it forecasts with, and the realised-skill window."""

    labels: list[Literal["stable", "canary"]] = Field(min_length=1)
    realised_window_days: int = Field(ge=1)

    @field_validator("labels")
    @classmethod
    def _distinct(cls, labels: list[str]) -> list[str]:
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels must be distinct (got {labels})")
        return labels


class Promotion(_Strict):
    """When the canary's realised skill earns it the stable label (``soilcast promote --auto``)."""

    min_days: int = Field(ge=1)  # paired init days verified at every lead, at least
    margin: float = Field(ge=0)  # in MSE skill vs persistence


class FigureScales(_Strict):
    """Fixed colour limits per quantity (:mod:`soilcast.style`), so two figures, two models or
    two runs are compared on one scale; values beyond a limit are drawn at the limit's colour."""

    soil_moisture: FloatPair  # m3/m3, the observed and forecast fields
    rmse: FloatPair           # m3/m3, per-cell error maps
    skill: FloatPair          # MSE skill (1 - MSE/MSE_ref), diverging, centred on 0
    anomaly: FloatPair        # m3/m3 vs the training-years climatology, diverging

    @model_validator(mode="after")
    def _ordered(self) -> "FigureScales":
        for name, (lo, hi) in self:
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(f"scales.{name}: expected two finite limits, low < high, got [{lo}, {hi}]")
        for name in ("skill", "anomaly"):
            lo, hi = getattr(self, name)
            if not lo < 0.0 < hi:
                raise ValueError(f"scales.{name}: a diverging scale must hold 0 inside, got [{lo}, {hi}]")
        return self


class Figures(_Strict):
    dpi: int = Field(ge=50, le=300)
    scales: FigureScales


class Evaluation(_Strict):
    """How scores and figures are split and drawn (evaluate, the hindcast and their figures).

    ``seasons``: name -> months of the VALID day; every month in exactly one season, in the
    order the tables and figures list them. ``wet_season`` / ``dry_season``: the two seasons
    the time-series panels and day maps show."""

    seasons: dict[str, list[int]] = Field(min_length=1)
    wet_season: str
    dry_season: str
    figures: Figures

    @model_validator(mode="after")
    def _partition(self) -> "Evaluation":
        seen: dict[int, str] = {}
        for name, months in self.seasons.items():
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(f"seasons: name {name!r} must be lower-case letters, digits and _ "
                                 "(it names table rows, JSON keys and files)")
            if not months:
                raise ValueError(f"seasons.{name}: no months")
            for m in months:
                if not 1 <= m <= 12:
                    raise ValueError(f"seasons.{name}: month {m} is not 1..12")
                if m in seen:
                    raise ValueError(f"seasons: month {m} is in both {seen[m]!r} and {name!r}")
                seen[m] = name
        missing = sorted(set(range(1, 13)) - set(seen))
        if missing:
            raise ValueError(f"seasons: months {missing} are in no season (every month must be in one)")
        for key in ("wet_season", "dry_season"):
            if getattr(self, key) not in self.seasons:
                raise ValueError(f"{key}: {getattr(self, key)!r} is not one of seasons {list(self.seasons)}")
        return self


class Party(_Strict):
    """A creator or publisher of soilcast's files (ACDD-1.3 ``creator_*`` / ``publisher_*``)."""

    name: str = Field(min_length=1)
    type: Literal["person", "group", "institution", "position"]
    institution: str = Field(min_length=1)
    url: str | None          # null: left out of the files, never invented
    email: str | None

    @field_validator("url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        if url is not None and not re.fullmatch(r"https?://\S+", url):
            raise ValueError(f"expected an http(s):// URL or null, got {url!r}")
        return url

    @field_validator("email")
    @classmethod
    def _email(cls, email: str | None) -> str | None:
        if email is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
            raise ValueError(f"expected an e-mail address or null, got {email!r}")
        return email


class Metadata(_Strict):
    """Who made and who publishes the files (forecast.nc, hindcast.nc)."""

    creator: Party
    publisher: Party

    def attributes(self) -> dict[str, str]:
        """The ACDD-1.3 creator/publisher global attributes that have a value."""
        out = {}
        for role in ("creator", "publisher"):
            party = getattr(self, role)
            for key in ("name", "type", "institution", "url", "email"):
                if getattr(party, key) is not None:
                    out[f"{role}_{key}"] = getattr(party, key)
        return out


class Pipeline(_Strict):
    image: str
    experiment: str
    cpu_request: str
    memory_request: str


class Config(_Strict):
    seed: int
    period: Period
    paths: Paths
    demo: DemoConfig
    variables: list[VariableSpec] = Field(min_length=1)
    target: VariableSpec
    sources: Sources
    grid: GridSpec
    basins: Basins
    validate_: Validate = Field(alias="validate")
    preprocess: Preprocess
    regrid: Regrid
    split: Split
    window: Window
    scaling: Scaling
    models: NetworkSections
    training: Training
    forecast_error: ForecastError
    forecast_head: ForecastHead
    forecast: Forecast
    climatology: Climatology
    linear_reference: LinearReference
    evaluation: Evaluation
    gate: Gate
    export: Export
    serving: Serving
    operations: Operations
    promotion: Promotion
    metadata: Metadata
    pipeline: Pipeline

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True, allow_inf_nan=False)

    @model_validator(mode="after")
    def _consistent(self) -> "Config":
        names = [v.name for v in self.variables]
        if len(set(names)) != len(names):
            raise ValueError(f"variables: duplicate names in {names}")
        self._one_reader_per_field()
        if self.target.transform != "none":
            raise ValueError(
                f"target.transform is {self.target.transform!r}: the target is min-max scaled "
                "(scaling.target_range), so only 'none' is meaningful"
            )
        first, last = self.split.train_years[0], self.split.test_years[1]
        if first < self.period.start.year or last > self.period.end.year:
            raise ValueError(
                f"split: years {first}-{last} fall outside period "
                f"{self.period.start}..{self.period.end}"
            )
        self._window_fits_splits()
        self._gate_interval_exists()
        return self

    def _one_reader_per_field(self) -> None:
        """Two specs reading the same field of the same files would be one field twice (a
        copy-paste slip that trains on a duplicated channel, or the target as an input)."""
        seen: dict[tuple[str, str, str], str] = {}
        specs = [(f"variables.{i} ({v.name})", v, self.sources.met) for i, v in enumerate(self.variables)]
        specs.append((f"target ({self.target.name})", self.target, self.sources.target))
        for key, spec, source in specs:
            field = (str(Path(source.folder)), source.pattern, spec.source_name)
            if field in seen:
                raise ValueError(f"{key} and {seen[field]} both read source_name {spec.source_name!r} from "
                                 f"{source.folder}/{source.pattern}: each field is read once")
            seen[field] = key

    def _gate_interval_exists(self) -> None:
        from soilcast.quantiles import INTERVALS, interval_pairs

        levels = self.forecast.quantiles
        if self.forecast.probabilistic and self.gate.coverage_interval not in interval_pairs(levels):
            lo, hi = INTERVALS.get(self.gate.coverage_interval, ("?", "?"))
            raise ValueError(f"gate.coverage_interval {self.gate.coverage_interval}: forecast.quantiles {levels} "
                             f"must hold its levels {lo} and {hi} (intervals: {dict(INTERVALS)})")

    def _window_fits_splits(self) -> None:
        """Every split must hold one whole window (inputs and target), or training fails late."""
        need = self.window.seq_len + self.window.max_lead
        for name in ("train_years", "val_years", "test_years"):
            y0, y1 = getattr(self.split, name)
            lo, hi = max(self.period.start, dt.date(y0, 1, 1)), min(self.period.end, dt.date(y1, 12, 31))
            days = (hi - lo).days + 1
            if days < need:
                raise ValueError(
                    f"window.seq_len + max(window.leads) = {self.window.seq_len} + {self.window.max_lead} "
                    f"= {need} days do not fit split.{name} {y0}-{y1} ({days} days in the period): "
                    "shorten the window or widen the split"
                )

    @property
    def variable_names(self) -> list[str]:
        return [v.name for v in self.variables]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``overrides`` merged in, recursively for nested mappings."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


MAX_QUOTED = 80  # longest offending value quoted in an error (a whole section is not quoted)


def _format_errors(source: str, err: ValidationError) -> str:
    """One line per problem naming the key; the value only when it is short (never the config)."""
    return "\n".join([f"{source}: invalid configuration", *error_lines(err)])


def error_lines(err: ValidationError, prefix: tuple[str, ...] = ()) -> list[str]:
    """``  key: problem (got value)`` for each error, keys under ``prefix`` (e.g. models.gru)."""
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in (*prefix, *e["loc"]))
        msg = e["msg"].removeprefix("Value error, ")
        got = repr(e.get("input"))
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        elif not key:  # a cross-section check: its message names the keys
            lines.append(f"  {msg}")
        elif isinstance(e.get("input"), (dict, list)) or len(got) > MAX_QUOTED or e["type"] == "missing":
            lines.append(f"  {key}: {msg}")
        else:
            lines.append(f"  {key}: {msg} (got {got})")
    return lines


def config_from_dict(raw: dict[str, Any], source: str = "<dict>", memory: int | None = None) -> Config:
    """Validate ``raw``; then check that the grid's rasters fit this machine (``memory`` bytes,
    default :func:`machine_memory`), before any stage allocates them."""
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_errors(source, err)) from None
    check_memory(cfg, memory, stages=LOAD_STAGES, source=source)
    return cfg


# ---- what the stages hold in memory at once, from the config alone --------------------------

GIB = 1024**3
FLOAT32, FLOAT64 = 4, 8
# clip, cell_rule centre (data/clip.py rasterize): two float64 coordinate grids (meshgrid), the
# int32 basin raster and a boolean hit raster per basin, each H x W
CLIP_CENTRE_BYTES = 2 * FLOAT64 + 4 + 1
# cell_rule fraction: a shapely box per cell (~400 bytes each, measured) and its intersection
# with the basins, plus float64 areas and shares
CLIP_FRACTION_BYTES = 2 * 400 + 3 * FLOAT64
# Stages whose footprint every load checks: the grid rasters, which clip builds and every stage
# that reads the mask holds; a grid that cannot hold them is impossible on this machine. The
# stages that grow with the period and the channels are checked by check-config (and by
# whoever runs a stage, with check_memory(cfg, stages=[name])).
LOAD_STAGES = ("clip",)


@dataclass(frozen=True)
class StageFootprint:
    bytes: int
    what: str  # the arrays held at once


@dataclass(frozen=True)
class Footprint:
    """Array sizes the config implies: the grid (H x W from ``grid``), the days (``period``),
    the store's channels (``variables`` + the target), all float32 in the store; and for each
    stage the bytes it holds at once (a lower bound: the largest arrays only, as the code
    allocates them)."""

    height: int
    width: int
    days: int
    channels: int
    store_bytes: int  # X [T, H, W, C] and Y [T, H, W, 1], float32, uncompressed
    stages: dict[str, StageFootprint]

    @property
    def cells(self) -> int:
        return self.height * self.width

    @property
    def largest(self) -> tuple[str, StageFootprint]:
        return max(self.stages.items(), key=lambda kv: kv[1].bytes)


def footprint(cfg: Config) -> Footprint:
    """What :mod:`soilcast.data.clip`, ``regrid``, ``stack`` and ``ml.train`` allocate at once."""
    h, w = cfg.grid.shape
    cells, days, chunk = h * w, cfg.period.n_days, min(cfg.preprocess.time_chunk_days, cfg.period.n_days)
    c_in = len(cfg.variables)
    channels = c_in + 1
    prepared = (c_in + int(cfg.window.antecedent_soil_moisture) + 1) + 1 + cfg.window.n_leads
    if cfg.basins.cell_rule == "centre":
        clip = StageFootprint(cells * CLIP_CENTRE_BYTES, "two float64 coordinate grids, the int32 basin raster "
                              "and a boolean one, each H x W")
    else:
        clip = StageFootprint(cells * CLIP_FRACTION_BYTES, "a shapely box per cell and its intersection with "
                              "the basins (cell_rule: fraction)")
    stages = {
        "clip": clip,
        # conservative(): the weighted sum, the quotient and the result, float64, per time chunk
        "regrid": StageFootprint(3 * chunk * cells * FLOAT64, f"three float64 blocks of "
                                 f"preprocess.time_chunk_days = {chunk} days x H x W"),
        # stack_block(): each channel's block and the stacked [t, H, W, C] copy, float32
        "stack": StageFootprint(2 * chunk * cells * channels * FLOAT32, f"{chunk} days x H x W x {channels} "
                                "channels, float32, twice (the channels and their stack)"),
        # load_tensors() holds the store; prepare() its scaled inputs, state and targets
        "train": StageFootprint(days * cells * (channels + prepared) * FLOAT32, f"the store's X and Y ({days} days "
                                f"x H x W x {channels} channels) and their scaled copies ({prepared} channels), "
                                "float32"),
    }
    return Footprint(h, w, days, channels, days * cells * channels * FLOAT32, stages)


def machine_memory() -> tuple[int, str] | None:
    """(bytes, where read) this process may use: MemTotal in /proc/meminfo (else the physical
    pages from sysconf), or a cgroup's memory limit when lower (a container); None if unknown."""
    found: tuple[int, str] | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                found = (int(line.split()[1]) * 1024, "MemTotal, /proc/meminfo")
                break
    except (OSError, ValueError, IndexError):
        pass
    if found is None:
        try:
            found = (os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "physical memory, sysconf")
        except (ValueError, OSError, AttributeError):
            return None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < found[0]:
            found = (int(text), f"cgroup limit, {path}")
    return found


def check_memory(cfg: Config, memory: int | None = None, *, stages: tuple[str, ...] | list[str] | None = None,
                 source: str = "params") -> Footprint:
    """Refuse (naming ``grid.res``) a config whose ``stages`` (default: all) hold more at once than
    ``memory`` bytes (default: this machine's, :func:`machine_memory`); returns the footprint."""
    fp = footprint(cfg)
    if memory is None:
        found = machine_memory()
        if found is None:
            return fp
        memory, where = found
    else:
        where = "given"
    picked = {k: v for k, v in fp.stages.items() if stages is None or k in stages}
    over = [(k, v) for k, v in picked.items() if v.bytes > memory]
    if over:
        stage, need = max(over, key=lambda kv: kv[1].bytes)
        raise ConfigError(
            f"{source}: invalid configuration\n"
            f"  grid.res: {cfg.grid.res} deg makes a {fp.height} x {fp.width} grid ({fp.cells:.3g} cells): "
            f"{stage} would hold ~{need.bytes / GIB:.1f} GiB at once ({need.what}), more than this machine's "
            f"memory ({memory / GIB:.1f} GiB, {where}); coarsen grid.res or shrink the grid, "
            f"period or variables (store: {fp.store_bytes / GIB:.1f} GiB)")
    return fp


class DuplicateKeyError(yaml.YAMLError):
    """A mapping that gives one key twice (YAML keeps the last silently; we refuse)."""


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 (and JSON) floats, refusing duplicate keys.

    Why: YAML 1.1 reads ``4.5e7`` and ``1e-05`` (no dot, or no exponent sign) as strings;
    with strict float fields they must load as the numbers everyone means. A key given twice
    (``seed: 42`` ... ``seed: 7``) would keep the last one without a word.
    """

    def construct_document(self, node: yaml.Node) -> Any:
        _refuse_duplicates(node, ())
        return super().construct_document(node)


MERGE_TAG = "tag:yaml.org,2002:merge"


def _refuse_duplicates(node: yaml.Node, path: tuple[str, ...], seen: set[int] | None = None) -> None:
    """Walk the node tree; a mapping key given twice raises naming its dotted path and lines.
    (Keys merged in with ``<<`` may be overridden: that is what a merge is for.)"""
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias to a node already walked
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            if key.tag == MERGE_TAG:
                _refuse_duplicates(value, path, seen)
                continue
            name = str(key.value) if isinstance(key, yaml.ScalarNode) else f"<{key.id}>"
            line = key.start_mark.line + 1
            if isinstance(key, yaml.ScalarNode):
                ident = (key.tag, key.value)
                if ident in first:
                    raise DuplicateKeyError(f"duplicate key {'.'.join((*path, name))!r} at line {line} "
                                            f"(first given at line {first[ident]}): give each key once")
                first[ident] = line
            _refuse_duplicates(value, (*path, name), seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_duplicates(item, (*path, str(i)), seen)


YamlLoader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                 |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
                 |[-+]?\.(?:inf|Inf|INF)
                 |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    """Parse params text (YAML or JSON) the one way every entry point does."""
    return yaml.load(text, Loader=YamlLoader)  # a SafeLoader subclass


def read_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        raw = yaml_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw


def load_config(
    path: str | Path = DEFAULT_PARAMS, overrides: dict[str, Any] | None = None
) -> Config:
    """Load ``params.yaml`` (optionally with nested overrides) into a validated Config."""
    raw = read_params(path)
    if overrides:
        raw = deep_merge(raw, overrides)
    return config_from_dict(raw, source=str(path))


def save_config(cfg: Config, path: str | Path) -> None:
    from soilcast.io.atomic import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(cfg.to_dict(), sort_keys=False))
