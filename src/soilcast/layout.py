"""Where every artifact lives: the one module that spells artifact file and folder names.

Stage functions take their inputs and outputs as arguments; this module says what those
paths are. :meth:`Layout.from_config` gives the tree ``dvc repro`` works in (from
``params.yaml``'s ``paths`` and the two stage settings that name folders); a Kubeflow
component builds the same small objects (:class:`RunDir`, :class:`EvalDir`, :class:`Bundle`)
on its artifact directories instead, so neither side fakes the other's tree.

Light on purpose (pathlib only): the CLI, components and serving import it freely.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from soilcast.config import Config

TENSORS_STORE = "tensors.zarr"  # the zarr store inside a tensors folder (Kubeflow Dataset)


@dataclass(frozen=True)
class _Folder:
    """A folder whose files have fixed names; ``root`` may be given as a string (a KFP path)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))


@dataclass(frozen=True)
class ReportDir(_Folder):
    """The validate stage's output folder."""

    @property
    def report(self) -> Path:
        return self.root / "report.json"

    @property
    def summary(self) -> Path:
        return self.root / "daily_summary.csv"

    @property
    def html(self) -> Path:
        return self.root / "report.html"

    @property
    def data_docs(self) -> Path:
        return self.root / "data_docs"


@dataclass(frozen=True)
class RunDir(_Folder):
    """One network's training run folder (``train/<model>/`` under DVC, a Model artifact in KFP)."""

    @property
    def model(self) -> Path:
        return self.root / "model.keras"

    @property
    def record(self) -> Path:
        return self.root / "record.json"

    @property
    def scaling(self) -> Path:
        return self.root / "scaling.json"

    @property
    def grid(self) -> Path:
        return self.root / "grid.json"

    @property
    def history(self) -> Path:
        return self.root / "history.csv"

    @property
    def learning_curve(self) -> Path:
        return self.root / "learning_curve.png"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"


@dataclass(frozen=True)
class EvalDir(_Folder):
    """The evaluate stage's output folder."""

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def leaderboard(self) -> Path:
        return self.root / "leaderboard.md"

    @property
    def summary(self) -> Path:
        """The compact DVC metric (:mod:`soilcast.evaluation.summary`)."""
        return self.root / "summary"

    @property
    def plots(self) -> Path:
        return self.root / "plots"


@dataclass(frozen=True)
class HindcastDir(_Folder):
    """One hindcast's output folder (``soilcast hindcast``)."""

    @property
    def archive(self) -> Path:
        return self.root / "hindcast.nc"

    @property
    def scores(self) -> Path:
        return self.root / "scores.json"

    @property
    def table(self) -> Path:
        return self.root / "scores.md"

    @property
    def hydrographs(self) -> Path:
        return self.root / "hydrographs.png"

    @property
    def skill_by_lead(self) -> Path:
        return self.root / "skill_by_lead.png"

    @property
    def skill_by_season(self) -> Path:
        return self.root / "skill_by_season.png"

    @property
    def figures(self) -> tuple[Path, Path, Path]:
        """The figures :mod:`soilcast.serving.hindcast_figures` draws, in the order it writes them."""
        return (self.hydrographs, self.skill_by_lead, self.skill_by_season)


@dataclass(frozen=True)
class OperationsDir(_Folder):
    """The daily operation's records (``artifacts/operations``): every issued forecast, its
    verification, the realised-skill status the gateway exports, and every promotion decision."""

    @property
    def archive(self) -> Path:
        return self.root / "archive.zarr"

    @property
    def verification(self) -> Path:
        return self.root / "verification.csv"

    @property
    def status(self) -> Path:
        return self.root / "status.json"

    @property
    def promotion_log(self) -> Path:
        return self.root / "promotion_log.jsonl"


@dataclass(frozen=True)
class Bundle(_Folder):
    """One exported version ``<models_dir>/<v>/`` as TF Serving loads it, plus soilcast's files.

    The signature and tensor names inside the graph stay in :mod:`soilcast.contract`.
    """

    @property
    def saved_model(self) -> Path:
        return self.root / "saved_model.pb"

    @property
    def variables(self) -> Path:
        return self.root / "variables"

    @property
    def extra(self) -> Path:
        return self.root / "assets.extra"

    @property
    def metadata(self) -> Path:
        return self.extra / "soilcast_metadata.json"

    @property
    def drift_reference(self) -> Path:
        return self.extra / "drift_reference.json"

    @property
    def card(self) -> Path:
        return self.extra / "model_card.md"

    @property
    def warmup(self) -> Path:
        return self.extra / "tf_serving_warmup_requests"


def bundle(models_dir: Path | str, version: int | str) -> Bundle:
    """Version ``version`` under a TF Serving model base path."""
    return Bundle(Path(models_dir) / str(version))


ISVC_FILE = "inferenceservice.yaml"  # the export's KServe InferenceService, beside its record


@dataclass(frozen=True)
class Layout:
    """Every stage's inputs and outputs in one tree (what ``dvc.yaml`` spells with ``${...}``)."""

    raw_dir: Path
    basins: Path
    report_dir: Path
    regridded_dir: Path
    mask_file: Path
    tensors: Path
    forecast_store: Path  # forecast runs on the grid (sources.forecast)
    input_plots: Path
    train_dir: Path
    eval_dir: Path
    blessing: Path
    export_record: Path
    inference_service: Path  # the KServe deployment of the labelled versions (soilcast.export.kserve)
    models_dir: Path
    forecasts_dir: Path
    hindcasts_dir: Path
    operations_dir: Path

    @classmethod
    def from_config(cfg_cls, cfg: Config) -> Layout:
        """The default tree from ``cfg.paths`` (the only reader of ``cfg.paths`` besides the CLI)."""
        p, art = cfg.paths, Path(cfg.paths.artifacts_dir)
        return cfg_cls(
            raw_dir=Path(p.raw_dir),
            basins=Path(cfg.basins.path),
            report_dir=Path(cfg.validate_.report_dir),
            regridded_dir=Path(p.interim_dir) / "regridded",
            mask_file=Path(p.interim_dir) / "mask.nc",
            tensors=Path(p.processed),
            forecast_store=Path(p.forecasts),
            input_plots=art / "plots" / "inputs",
            train_dir=art / "train",
            eval_dir=art / "eval",
            blessing=art / "gate" / "blessing.json",
            export_record=art / "export" / "export.json",
            inference_service=art / "export" / ISVC_FILE,
            models_dir=Path(p.models_dir),
            forecasts_dir=art / "forecasts",
            hindcasts_dir=art / "hindcast",
            operations_dir=art / "operations",
        )

    def run(self, name: str) -> RunDir:
        return RunDir(self.train_dir / name)

    def runs(self, names: list[str] | tuple[str, ...]) -> dict[str, RunDir]:
        return {name: self.run(name) for name in names}

    @property
    def evaluation(self) -> EvalDir:
        return EvalDir(self.eval_dir)

    @property
    def report(self) -> ReportDir:
        return ReportDir(self.report_dir)

    @property
    def operations(self) -> OperationsDir:
        return OperationsDir(self.operations_dir)

    def version(self, version: int | str) -> Bundle:
        return bundle(self.models_dir, version)


def regridded_file(regridded_dir: Path | str, name: str) -> Path:
    """One variable's file inside the regrid stage's output folder."""
    return Path(regridded_dir) / f"{name}.nc"


def tensors_in(folder: Path | str) -> Path:
    """The tensor store inside a folder artifact (a Kubeflow Dataset)."""
    return Path(folder) / TENSORS_STORE


def relocate(path: Path | str, old_root: Path | str, new_root: Path | str) -> Path:
    """``path`` moved from under ``old_root`` to the same place under ``new_root``.

    Why: the basins file travels inside the raw-data artifact at the place it has under
    ``paths.raw_dir``; a path outside ``old_root`` cannot travel and is an error naming both.
    """
    try:
        rel = Path(path).relative_to(Path(old_root))
    except ValueError:
        raise ValueError(f"{path} must lie under {old_root} to travel with it") from None
    return Path(new_root) / rel


RunDirs = Mapping[str, RunDir]
