"""``soilcast daily``: the operation a scheduler runs once a day.

ingest the delivery folder -> verify the archived forecasts whose valid day just arrived ->
forecast the latest day with each label of ``operations.labels`` (the gateway answers) ->
archive every forecast -> write the first label's products (``artifacts/forecasts/<init>/``).

Each step runs even when an earlier one failed, where that makes sense: a refused delivery
still lets yesterday's forecasts be verified and today's be issued from the store as it is
(the archive does not take the same forecast twice, so the day's forecast is not doubled);
a gateway that is down leaves ingest and verification done. Only a lock held by another
writer (a hand run meeting the cron run) stops the run at once: it changed nothing.

Every step prints one logfmt line an operator can alert on (``soilcast-daily step=ingest
status=failed code=10 seconds=0.8 message="..."``), the run a last one (``soilcast-daily
status=failed exit=11 ...``); the exit code is the most severe of the steps' (:data:`EXIT`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soilcast.io.lock import BUSY_EXIT

# exit codes, most severe first (the run exits with the first that a step reported)
EXIT = {
    "locked": BUSY_EXIT,  # another writer holds a lock: nothing was changed, run again (EX_TEMPFAIL, 75)
    "forecast": 11,  # a label's forecast was not issued (gateway down, deadline, refused)
    "delivery": 10,  # the delivery was missing or refused (its days not ingested)
    "verify": 12,  # verification failed (archive or table unreadable)
    "revised": 13,  # an observation changed after it was used for verification
}


@dataclass
class Step:
    name: str
    status: str = "ok"  # ok | failed | skipped
    code: int = 0
    seconds: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    def line(self) -> str:
        pairs = {"step": self.name, "status": self.status, "code": self.code, "seconds": f"{self.seconds:.2f}",
                 **self.detail}
        text = " ".join(f"{k}={_value(v)}" for k, v in pairs.items())
        return f"soilcast-daily {text}" + (f" message={json.dumps(self.message)}" if self.message else "")


def _value(v: Any) -> str:
    text = str(v)
    return json.dumps(text) if (" " in text or not text) else text


@dataclass
class DailyReport:
    steps: list[Step] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        codes = {s.code for s in self.steps if s.code}
        return next((c for c in EXIT.values() if c in codes), 0)

    def line(self) -> str:
        failed = [s.name for s in self.steps if s.status == "failed"]
        return (f"soilcast-daily status={'failed' if self.exit_code else 'ok'} exit={self.exit_code} "
                f"seconds={self.seconds:.2f}" + (f" failed={','.join(failed)}" if failed else ""))

    def to_dict(self) -> dict[str, Any]:
        return {"exit_code": self.exit_code, "seconds": round(self.seconds, 2),
                "steps": [{"name": s.name, "status": s.status, "code": s.code, "seconds": round(s.seconds, 2),
                           **s.detail, "message": s.message} for s in self.steps]}


def _timed(name: str, fn: Callable[[Step], None], emit: Callable[[str], None]) -> Step:
    """Run one step; a held lock and the step's own failures become its status and code."""
    from soilcast.io.lock import LockBusy

    step, t0 = Step(name), time.perf_counter()
    try:
        fn(step)
    except LockBusy as err:
        step.status, step.code, step.message = "failed", EXIT["locked"], str(err)
    step.seconds = time.perf_counter() - t0
    emit(step.line())
    return step


def ingest_step(cfg: Any, layout: Any, delivery: Path | None) -> Callable[[Step], None]:
    from soilcast.data.ingest import ingest
    from soilcast.data.readers import DataError

    def run(step: Step) -> None:
        if delivery is None:
            step.status = "skipped"
            return
        try:
            result = ingest(cfg, Path(delivery), layout.tensors)
        except DataError as err:
            step.status, step.code, step.message = "failed", EXIT["delivery"], str(err)
            return
        step.detail = {"added": len(result.added), "already": len(result.already)}
        if len(result.added):
            step.detail.update(first=str(result.added[0].date()), last=str(result.added[-1].date()))
    return run


def verify_step(cfg: Any, layout: Any) -> Callable[[Step], None]:
    from soilcast.operations.verify import verify

    def run(step: Step) -> None:
        try:
            done = verify(cfg, layout)
        except (ValueError, OSError) as err:
            step.status, step.code, step.message = "failed", EXIT["verify"], str(err)
            return
        step.detail = {"scored": done.n_scored, "observed_to": done.last_observed}
        if done.revised:
            step.status, step.code = "failed", EXIT["revised"]
            step.message = (f"observations of {', '.join(done.revised)} changed after forecasts were verified "
                            "against them; their rows keep the old scores (rebuild the table to rescore)")
    return run


def forecast_step(cfg: Any, layout: Any, server: str, label: str, weather: Path | None,
                  root_certificates: bytes | None, products: bool) -> Callable[[Step], None]:
    import grpc

    from soilcast.data.store import open_tensors
    from soilcast.operations.record import archive_forecast
    from soilcast.serving.client import SoilcastClient, describe_rpc_error
    from soilcast.serving.forecast import LATEST, issue_forecast, resolve_init, write_products

    def run(step: Step) -> None:
        tensors = open_tensors(layout.tensors, load=False)
        init = resolve_init(tensors, LATEST)
        step.detail = {"label": label, "init": str(init)}
        try:
            with SoilcastClient.from_config(cfg, server, root_certificates=root_certificates,
                                            version_label=label) as client:
                issued = issue_forecast(cfg, tensors, client, init, weather)
        except grpc.RpcError as err:
            step.status, step.code = "failed", EXIT["forecast"]
            step.message = describe_rpc_error(server, err, cfg.serving.client_timeout_seconds)
            return
        except ValueError as err:
            step.status, step.code, step.message = "failed", EXIT["forecast"], str(err)
            return
        done = archive_forecast(cfg, layout, issued, tensors, server)
        step.detail.update(version=issued.served_version, archived="new" if done.new else "already",
                           entry=done.index)
        if products:
            step.detail["out_dir"] = write_products(cfg, layout, tensors, issued)["out_dir"]
    return run


def run_daily(cfg: Any, layout: Any, server: str, delivery: Path | None, weather: Path | None = None,
              root_certificates: bytes | None = None, emit: Callable[[str], None] = lambda line: None) -> DailyReport:
    """One daily cycle (module docstring); ``emit`` receives each log line as it happens."""
    t0, report = time.perf_counter(), DailyReport()
    plan: list[tuple[str, Callable[[Step], None]]] = [
        ("ingest", ingest_step(cfg, layout, delivery)), ("verify", verify_step(cfg, layout))]
    for i, label in enumerate(cfg.operations.labels):
        plan.append((f"forecast_{label}",
                     forecast_step(cfg, layout, server, label, weather, root_certificates, products=i == 0)))
    for name, fn in plan:
        step = _timed(name, fn, emit)
        report.steps.append(step)
        if step.code == EXIT["locked"]:
            break
    report.seconds = time.perf_counter() - t0
    emit(report.line())
    return report
