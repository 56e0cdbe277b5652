"""The DVC stages, declared once: for each, the command that runs it, its function, its params,
its path arguments (ports) and the library modules its command calls.

Why: the wiring "data product -> stage argument" used to be written in the CLI, the tests'
wrappers, the Kubeflow components and dvc.yaml; now :func:`arguments` derives it from
:data:`STAGES` for all of them, and :mod:`soilcast.dvc_stages` checks dvc.yaml's cmds, deps,
outs, params and code deps against the table (``python -m soilcast.dvc_stages --check``).

This module is part of every stage's code (the commands call :func:`arguments`), so it holds
only the table and the binding: the import graph (:mod:`soilcast.import_graph`) and the
dvc.yaml check (:mod:`soilcast.dvc_stages`) live apart, and editing them reruns no stage.
"""


from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Data:
    """A data product the stages pass on: where the default tree keeps it (``Layout``, for a
    network's run ``item``) and what a stage function receives for a path of it (``names``:
    the networks, for the folder of every run)."""

    where: Callable[[Any, str | None], Path]
    wrap: Callable[[Path, Sequence[str]], Any] = lambda path, names: Path(path)


def _runs(path: Path, names: Sequence[str]) -> dict:
    from soilcast.layout import RunDir

    return {n: RunDir(Path(path) / n) for n in names}


def _run_dir(path: Path, names: Sequence[str]) -> Any:
    from soilcast.layout import RunDir

    return RunDir(path)


def _eval_dir(path: Path, names: Sequence[str]) -> Any:
    from soilcast.layout import EvalDir

    return EvalDir(path)


# The one registry of the data products: the stage table's ports name them.
DATA: dict[str, Data] = {
    "raw": Data(lambda lay, _: lay.raw_dir),
    "report": Data(lambda lay, _: lay.report_dir),
    "regridded": Data(lambda lay, _: lay.regridded_dir),
    "basins": Data(lambda lay, _: lay.basins),
    "mask": Data(lambda lay, _: lay.mask_file),
    "tensors": Data(lambda lay, _: lay.tensors),
    "input_plots": Data(lambda lay, _: lay.input_plots),
    "forecasts": Data(lambda lay, _: lay.forecast_store),
    "run": Data(lambda lay, item: lay.run(item).root, _run_dir),
    "runs": Data(lambda lay, _: lay.train_dir, _runs),
    "evaluation": Data(lambda lay, _: lay.eval_dir, _eval_dir),
    "metrics": Data(lambda lay, _: lay.evaluation.metrics),
    "blessing": Data(lambda lay, _: lay.blessing),
    "repository": Data(lambda lay, _: lay.models_dir),  # the served model repository (TF Serving's base path)
    "export_record": Data(lambda lay, _: lay.export_record),
    "inference_service": Data(lambda lay, _: lay.inference_service),
}


@dataclass(frozen=True)
class Port:
    """One argument of a stage function that is a path: the function's parameter ``arg``, the
    data product (a key of :data:`DATA`), the ``soilcast <command>`` option that overrides its
    place, and whether the stage writes it (``out``, dvc.yaml ``outs``) or reads it (``deps``).
    ``tracked=False``: state outside DVC (the served model repository) or a path only named, not
    read (clip's ``--raw``). ``needs``: a params switch without which the port is left out
    (None) unless a path is given (``sources.forecast``: the forecast store)."""

    arg: str
    data: str
    option: str
    out: bool = False
    tracked: bool = True
    needs: str | None = None


def _in(arg: str, data: str, option: str, **kw: Any) -> Port:
    return Port(arg, data, option, **kw)


def _out(arg: str, data: str, option: str = "--out", **kw: Any) -> Port:
    return Port(arg, data, option, out=True, **kw)


_FORECASTS = "sources.forecast"


@dataclass(frozen=True)
class Stage:
    """One DVC stage: ``soilcast <command>`` runs ``function`` (``"module:name"``) through the
    command's module ``shell``; ``entries`` are the other library modules that command calls
    for it; ``params`` the params.yaml sections as ``dvc.yaml`` lists them; ``ports`` the
    function's path arguments (what the CLI, the tests' wrappers, the Kubeflow components and
    dvc.yaml's deps/outs wire)."""

    name: str
    command: str
    function: str
    shell: str
    params: tuple[str, ...]
    ports: tuple[Port, ...] = ()
    entries: tuple[str, ...] = ()
    foreach: bool = False  # one stage per network (``foreach: ${training.models}``)
    optional: bool = False  # dvc.yaml may leave it out (forecasts with sources.forecast: null)

    @property
    def module(self) -> str:
        return self.function.partition(":")[0]

    @property
    def roots(self) -> tuple[str, ...]:
        """The library modules the closure starts from (with the shell, followed at module level)."""
        return (self.module, *self.entries)


_NETWORKS = "soilcast.ml.models.registry"  # load_cfg(networks=True) checks the networks' params

STAGES: tuple[Stage, ...] = (
    Stage("validate", "validate", "soilcast.data.validate:run_validation", "soilcast.commands.data",
          ("period", "variables", "target", "sources", "validate", "preprocess.time_chunk_days"),
          (_in("raw_dir", "raw", "--raw"), _out("report_dir", "report", "--report")),
          entries=("soilcast.layout", "soilcast.data.readers")),
    Stage("regrid", "regrid", "soilcast.data.regrid:regrid_all", "soilcast.commands.data",
          ("period", "variables", "target", "sources", "grid", "regrid", "preprocess.time_chunk_days"),
          (_in("raw_dir", "raw", "--raw"), _in("report_dir", "report", "--report"), _out("out_dir", "regridded")),
          entries=("soilcast.data.readers",)),
    Stage("clip", "clip", "soilcast.data.clip:build_mask", "soilcast.commands.data",
          ("grid", "basins"),
          (_in("basins_path", "basins", "--basins"), _out("out_file", "mask"),
           _in("raw_dir", "raw", "--raw", tracked=False)),
          entries=("soilcast.data.readers",)),
    Stage("stack", "stack", "soilcast.data.stack:stack_tensors", "soilcast.commands.data",
          ("period", "variables", "target", "grid", "basins", "preprocess"),
          (_in("regridded_dir", "regridded", "--regridded"), _in("mask_file", "mask", "--mask"),
           _in("report_dir", "report", "--report"), _in("basins", "basins", "--basins"),
           _out("out_store", "tensors"), _out("plots", "input_plots", "--plots")),
          entries=("soilcast.data.readers",)),
    Stage("forecasts", "forecasts", "soilcast.data.forecast_store:build_forecast_store", "soilcast.commands.data",
          ("variables", "sources.forecast", "grid", "window.leads"),
          (_in("raw_dir", "raw", "--raw"), _in("mask_path", "mask", "--mask"), _out("out", "forecasts")),
          entries=("soilcast.data.readers",), optional=True),
    Stage("train", "train", "soilcast.ml.train:train_model", "soilcast.commands.ml",
          ("seed", "split", "window", "scaling", "models.${item}", "training", "climatology.window_days",
           "forecast_error", "forecast_head", "forecast"),
          (_in("tensors", "tensors", "--tensors"), _out("run", "run")),
          entries=(_NETWORKS, "soilcast.ml.distribute", "soilcast.records"), foreach=True),
    Stage("evaluate", "evaluate", "soilcast.evaluation.evaluate:evaluate", "soilcast.commands.evaluation",
          ("split", "window", "scaling", "climatology", "linear_reference", "forecast", "evaluation",
           "gate.primary_metric"),
          (_in("tensors", "tensors", "--tensors"), _in("runs", "runs", "--train"), _out("out", "evaluation"),
           _in("forecasts_store", "forecasts", "--forecasts", needs=_FORECASTS)),
          entries=(_NETWORKS, "soilcast.records")),
    Stage("gate", "gate", "soilcast.evaluation.gate:run_gate", "soilcast.commands.evaluation",
          ("gate",),
          (_in("metrics_file", "metrics", "--metrics"), _in("tensors", "tensors", "--tensors"),
           _in("models_dir", "repository", "--models", tracked=False), _out("out_file", "blessing"),
           _in("forecasts", "forecasts", "--forecasts", needs=_FORECASTS)),
          entries=(_NETWORKS,)),
    Stage("export", "export", "soilcast.export.savedmodel:export_blessed", "soilcast.commands.evaluation",
          ("export", "window", "forecast", "split.train_years", "serving.psi_bins", "serving.model_name"),
          (_in("blessing_file", "blessing", "--blessing"), _in("metrics_file", "metrics", "--metrics"),
           _in("runs", "runs", "--train"), _in("tensors_store", "tensors", "--tensors"),
           _in("models_dir", "repository", "--models", tracked=False), _out("out_file", "export_record"),
           _out("inference_service", "inference_service", "--inference-service")),
          entries=(_NETWORKS, "soilcast.export.infra", "soilcast.io.lock")),
)
BY_NAME = {s.name: s for s in STAGES}


def stage(name: str) -> Stage:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"no stage {name!r}; the stages are {', '.join(BY_NAME)}") from None


def load_function(name: str):
    """The stage's function, imported (``load_function("validate")`` is ``run_validation``)."""
    import importlib

    module, _, attr = stage(name).function.partition(":")
    return getattr(importlib.import_module(module), attr)


def _switched_on(cfg: Any, switch: str) -> bool:
    value = cfg
    for key in switch.split("."):
        value = getattr(value, key)
    return value is not None and value is not False


def arguments(name: str, cfg: Any, layout: Any, given: Mapping[str, Any] | None = None, *,
              item: str | None = None, names: Sequence[str] = ()) -> dict[str, Any]:
    """The path arguments of stage ``name``'s function: ``given[arg]`` where it is not None
    (a CLI option, a Kubeflow artifact's path), else the data's place in ``layout`` (the
    default tree), each as the function takes it (a run folder, the runs of ``names``).
    ``item``: the network of a per-network stage. A port whose ``needs`` switch is off in
    ``cfg`` is None unless given. The one place the wiring "layout path -> argument" lives."""
    st, given = stage(name), dict(given or {})
    unknown = sorted(set(given) - {p.arg for p in st.ports})
    if unknown:
        raise KeyError(f"stage {name!r} has no path argument {unknown}; its ports are "
                       f"{[p.arg for p in st.ports]}")
    out: dict[str, Any] = {}
    for port in st.ports:
        path = given.get(port.arg)
        if path is None and port.needs and not _switched_on(cfg, port.needs):
            out[port.arg] = None
            continue
        data = DATA[port.data]
        out[port.arg] = data.wrap(Path(path if path is not None else data.where(layout, item)), names)
    return out
