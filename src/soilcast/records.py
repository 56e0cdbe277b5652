"""The records stages hand each other, typed: training record, leaderboard, gate decision.

Why: ``record.json`` (train -> evaluate, export, card), ``metrics.json`` (evaluate -> gate,
export, card, pipeline summaries) and ``blessing.json`` (gate -> export, card, pipeline) were
dicts indexed by string keys in a dozen places; a renamed key failed far from its cause.
Each is now a pydantic model: writers build it (validated when built), readers get
attributes, and a file that misses a key or holds one it should not (another format) is
refused with a :class:`RecordError` naming the file and the key.

The files keep their content: ``to_json()`` gives exactly the dict written before (the
same keys, in the same order, with the same values; keys a writer leaves out stay out).
Blocks of metrics stay mappings ``{metric name: value}``: the metric names are the
metrics' own (see ``soilcast.evaluation.metrics``), not fields of a record.

Light on purpose (pydantic only): ``soilcast.pipeline`` and the CLI read records without
importing TensorFlow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, model_validator

Value = int | float | None  # a metric value (None: not finite); counts such as ``n`` stay ints
Block = dict[str, Value]  # {metric name: value}
ByLead = dict[str, Block]  # {lead in days, as a string: block}: every score keeps the lead axis

R = TypeVar("R", bound="_Json")


class RecordError(ValueError):
    """A record file that cannot be used; the message names the file and the key."""


def _errors(source: str, what: str, err: ValidationError) -> str:
    lines = [f"{source}: not a valid {what} (written by another version? rerun the stage that writes it)"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  {key}: {'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}")
    return "\n".join(lines)


class _Json:
    """``to_json``/``from_json``/``read``/``write`` shared by the records."""

    WHAT: ClassVar[str]

    def to_json(self) -> dict[str, Any]:
        """The JSON document, exactly as the writer set it (unset optional keys left out)."""
        return self.model_dump(mode="json", exclude_unset=True)  # type: ignore[attr-defined]

    @classmethod
    def from_json(cls: type[R], data: Any, source: str = "<json>") -> R:
        try:
            return cls.model_validate(data)  # type: ignore[attr-defined]
        except ValidationError as err:
            raise RecordError(_errors(source, cls.WHAT, err)) from None

    @classmethod
    def read(cls: type[R], path: Path, hint: str = "") -> R:
        """Load and validate ``path``; a missing file is FileNotFoundError (``hint``: how to make it)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: {cls.WHAT} not found{f' ({hint})' if hint else ''}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise RecordError(f"{path}: {cls.WHAT} is not valid JSON: {err}") from None
        return cls.from_json(data, str(path))

    def write(self, path: Path) -> Path:
        from soilcast.io.atomic import atomic_write_json

        atomic_write_json(Path(path), self.to_json())
        return Path(path)


class _Record(_Json, BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- training


class TrainData(_Record):
    store: str
    input_hashes: dict[str, Any] | None
    shape: list[int]


class Distribution(_Record):
    kind: str
    replicas: int


class TrainRecord(_Record):
    """``artifacts/train/<model>/record.json``: what a training run did and scored."""

    WHAT: ClassVar[str] = "training record"

    model: str
    config: dict[str, Any]  # the resolved params the run used (Config.to_dict())
    data: TrainData
    fingerprint: str
    epochs: int
    epochs_this_run: int
    resumed_from_epoch: int
    best_epoch: int | None
    selected_on: str
    steps_per_epoch: int
    batch_size: int
    patch: list[int]
    train_windows: int
    val_windows: int
    wall_time_s: float
    samples_per_s: float | None
    params: int
    precision: str
    distribution: Distribution
    keras_backend: str
    keras_version: str
    best_val_forecast_mse: float
    target: str
    val: dict[str, dict[str, float]]  # {network or reference: {window_mse, forecast_mse}}
    val_space: str


# --------------------------------------------------------------------------- evaluation


class Scored(_Record):
    """One model's scores, every block by lead: test (overall, per season, per basin) and
    validation. ``init_period``: first and last init day of the test windows."""

    status: Literal["ok"]
    kind: Literal["network", "reference"]
    # the lead days' weather a network was fed (contract.WEATHER_FEEDS): past = none
    feed: Literal["past", "forecast", "perfect"] = "past"
    n_windows: int
    leads: list[int]
    init_period: list[str]
    overall: ByLead
    seasons: dict[str, ByLead]
    basins: dict[str, ByLead]
    val: ByLead | None
    # quantile levels of a probabilistic forecast ([] for a point forecast), and per lead key
    # its PIT histogram and reliability diagram for "D1 or worse" on the test years
    levels: list[float] = []
    calibration: dict[str, dict[str, Any]] = {}


class Skipped(_Record):
    """A model that was not scored, and why (not trained, or refused as stale)."""

    status: Literal["skipped"]
    reason: str


Entry = Annotated[Scored | Skipped, Field(discriminator="status")]


class Leaderboard(_Json, RootModel[dict[str, Entry]]):
    """``artifacts/eval/metrics.json``: every model by name, scored or skipped."""

    WHAT: ClassVar[str] = "evaluation metrics"

    def __getitem__(self, name: str) -> Scored | Skipped:
        if name not in self.root:
            raise KeyError(f"{name!r} is not in the evaluation metrics (models: {sorted(self.root)})")
        return self.root[name]

    def __contains__(self, name: object) -> bool:
        return name in self.root

    def __iter__(self):  # type: ignore[override]
        return iter(self.root)

    def __len__(self) -> int:
        return len(self.root)

    def items(self):
        return self.root.items()

    def scored(self) -> dict[str, Scored]:
        """The models that were scored, in file order."""
        return {n: e for n, e in self.root.items() if isinstance(e, Scored)}

    def skipped(self) -> dict[str, Skipped]:
        return {n: e for n, e in self.root.items() if isinstance(e, Skipped)}

    def val_of(self, name: str) -> ByLead:
        """Validation blocks of ``name`` by lead; empty when it was not scored (or has none)."""
        entry = self.root.get(name)
        return dict(entry.val or {}) if isinstance(entry, Scored) else {}

    def overall_of(self, name: str) -> ByLead:
        """Overall test blocks of ``name`` by lead; empty when it was not scored."""
        entry = self.root.get(name)
        return dict(entry.overall) if isinstance(entry, Scored) else {}

    def leads(self) -> list[int]:
        """The lead axis the models were scored on (the first scored entry's)."""
        return next((e.leads for e in self.scored().values()), [])


# --------------------------------------------------------------------------- gate


class Decision(_Record):
    """``artifacts/gate/blessing.json``: whether the winner is exported, and every reason.

    Keys after ``reasons`` exist only when the decision got that far (a winner, a champion
    that was re-scored, a run of the gate stage); they are left out of the file otherwise.
    """

    WHAT: ClassVar[str] = "gate decision"

    primary_metric: str
    selected_on: str
    leads: list[int]
    # per lead (validation): the benchmark reference with the lowest MSE there
    best_reference: dict[str, str]
    # network -> mean over leads of its validation MSE skill vs the best reference
    candidates: dict[str, float]
    winner: str | None
    thresholds: dict[str, float | None]
    # None: nothing served; else its version, path, model and re-scored metrics, or an
    # ``error`` (could not be re-scored) or ``incomparable`` (trained on other inputs)
    champion: dict[str, Any] | None
    reasons: list[str]
    winner_score: float | None = None
    # the network to export and how the winner's scores were fed (contract.SERVABLE_FEEDS):
    # forecast = with the forecast archive's runs (its forecast_with_weather signature)
    network: str | None = None
    served_feed: str | None = None
    skill_vs_best_reference: dict[str, float | None] | None = None  # validation, by lead
    weakest_lead: int | None = None
    validation: ByLead | None = None
    test: ByLead | None = None
    test_skill_vs_best_reference: dict[str, float | None] | None = None
    linear_reference: dict[str, Any] | None = None
    beats_linear: bool | None = None
    champion_score: float | None = None
    relative_change: float | None = None
    # a probabilistic winner: per lead (validation) the probabilistic reference with the
    # lowest CRPS, the winner's CRPS skill against it, and its interval coverage
    best_probabilistic_reference: dict[str, str] | None = None
    crps_skill_vs_best_probabilistic_reference: dict[str, float | None] | None = None
    coverage: dict[str, Any] | None = None
    blessed: bool
    metrics_file: str | None = None

    @model_validator(mode="after")
    def _winner_scored(self) -> "Decision":
        if self.winner is not None:
            missing = [k for k in ("winner_score", "validation", "test") if k not in self.model_fields_set]
            if missing:
                raise ValueError(f"winner {self.winner!r} without {missing}")
        return self


# --------------------------------------------------------------------------- export


class BundleMetadata(_Record):
    """``<version>/assets.extra/soilcast_metadata.json`` (and the ``metadata`` signature): what a
    client, the gateway and the monitor need to use an exported model without the repo.

    Versioned (in the manner of anemoi's checkpoint metadata): ``schema_version`` 2 added the
    lead axis (``leads``, ``soil_moisture_by_lead``). A bundle written before it (no
    ``schema_version``, ``lead_days: 1``) is read as version 1 with ``leads == [lead_days]``
    (:meth:`upgrade`), so old exports keep loading and serving.
    """

    WHAT: ClassVar[str] = "bundle metadata"
    SCHEMA_VERSION: ClassVar[int] = 2

    schema_version: int
    model: str
    version: int
    model_name: str
    created_utc: str
    inputs: dict[str, list[int | None]]
    output: dict[str, Any]  # {output name: shape, "units": ...}
    variables: list[str]
    units: dict[str, str]
    target: str
    seq_len: int
    leads: list[int]
    antecedent_soil_moisture: bool
    grid: dict[str, Any]
    mask: list[list[int]]
    basin_names: dict[str, str]
    basins: list[dict[str, Any]]
    data_hashes: dict[str, Any]
    split: dict[str, Any]
    precision: str
    test_metrics: dict[str, Any]
    training_record: dict[str, Any]
    fingerprint: dict[str, Any] | None = None
    products: dict[str, Any] | None = None
    # trained with the lead days' weather (none | perfect | forecast): then the bundle has
    # the forecast_with_weather signature, whose extra input ``weather_input`` describes
    forecast_weather: str = "none"
    weather_input: dict[str, Any] | None = None
    served_feed: str = "past"  # how the gate scored it: past (serving_default) or forecast
    # the levels of forecast_products' ``quantiles`` axis (absent or [0.5]: a point model)
    quantile_levels: list[float] | None = None

    @classmethod
    def upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
        """A metadata dict of any schema version as the current version would write it
        (version 1: ``lead_days`` becomes ``leads``)."""
        out = dict(data)
        if "schema_version" not in out:
            out["schema_version"] = 1
            if "lead_days" in out and "leads" not in out:
                out["leads"] = [int(out.pop("lead_days"))]
        return out
