"""Typed stage records: each round-trips to exactly the JSON it was built from (so the files
DVC and users read keep their content), and a file of another format is refused naming the
file and the key."""

from __future__ import annotations

import copy
import json

import pytest

from soilcast.io.atomic import atomic_write_json
from soilcast.records import Decision, Leaderboard, RecordError, Scored, Skipped, TrainRecord

BLOCK = {"rmse": 0.021, "mae": 0.015, "bias": -0.002, "n": 4123, "acc": None, "skill_vs_climatology": 0.41}


def train_record() -> dict:
    return {
        "model": "fc", "config": {"seed": 42, "window": {"seq_len": 7}},
        "data": {"store": "data/processed/tensors.zarr", "input_hashes": {"era5/tp_2010.nc": "ab12"},
                 "shape": [1461, 16, 16, 7]},
        "fingerprint": "f00d" * 16, "epochs": 2, "epochs_this_run": 2, "resumed_from_epoch": 0,
        "best_epoch": 2, "selected_on": "val_forecast_mse", "steps_per_epoch": 3, "batch_size": 4,
        "patch": [8, 8], "train_windows": 723, "val_windows": 8, "wall_time_s": 3.25, "samples_per_s": None,
        "params": 1234, "precision": "float32", "distribution": {"kind": "default", "replicas": 1},
        "keras_backend": "tensorflow", "keras_version": "3.0.0", "best_val_forecast_mse": 0.12,
        "target": "state",
        "val": {"fc": {"window_mse": 0.2, "forecast_mse": 0.12},
                "persistence": {"window_mse": 0.3, "forecast_mse": 0.2}},
        "val_space": "scaled state target, masked MSE",
    }


def by_lead(block: dict = BLOCK) -> dict:
    """A block per lead, keyed as the records key leads (strings)."""
    return {"1": block, "2": {**block, "rmse": 0.034}}


def leaderboard() -> dict:
    scored = {"status": "ok", "kind": "network", "n_windows": 358, "leads": [1, 2],
              "init_period": ["2013-01-07", "2013-12-29"], "overall": by_lead(),
              "seasons": {"monsoon_jjas": by_lead(), "rest": by_lead()}, "basins": {"West": by_lead()},
              "val": by_lead()}
    return {"fc": scored, "climatology": {**scored, "kind": "reference", "val": None},
            "gru": {"status": "skipped", "reason": "not trained: model.keras missing"}}


def decision(winner: bool = True) -> dict:
    head = {"primary_metric": "rmse", "selected_on": "validation", "leads": [1, 2],
            "best_reference": {"1": "persistence", "2": "damped_persistence"},
            "candidates": {"fc": 0.3} if winner else {},
            "winner": "fc" if winner else None,
            "thresholds": {"min_skill_vs_best_reference": 0.0, "max_regression": 0.02},
            "champion": {"version": 1, "path": "models/soilcast/1", "model": "lstm", "incomparable": "other inputs"},
            "reasons": ["fc: weakest lead 2 day(s), validation skill 0.2 vs the best reference there "
                        "(damped_persistence) >= required 0.0"]}
    if not winner:
        return {**head, "blessed": False}
    return {**head, "winner_score": 0.3, "skill_vs_best_reference": {"1": 0.4, "2": 0.2}, "weakest_lead": 2,
            "validation": by_lead(), "test": by_lead(), "test_skill_vs_best_reference": {"1": 0.38, "2": None},
            "linear_reference": {"skill_vs_best_reference": {"1": 0.1, "2": 0.05}},
            "beats_linear": True, "relative_change": None, "blessed": True, "metrics_file": "artifacts/eval/metrics.json"}


CASES = [(TrainRecord, train_record), (Leaderboard, leaderboard), (Decision, decision),
         (Decision, lambda: decision(winner=False))]


@pytest.mark.parametrize("cls, make", CASES)
def test_round_trip_is_exact(tmp_path, cls, make):
    data = make()
    record = cls.from_json(copy.deepcopy(data))
    assert record.to_json() == data
    assert json.dumps(record.to_json()) == json.dumps(data)  # same key order and number types
    written = record.write(tmp_path / "new.json")
    atomic_write_json(tmp_path / "old.json", data)  # how the stages wrote the dicts before
    assert written.read_bytes() == (tmp_path / "old.json").read_bytes()
    assert cls.read(written) == record


def test_attributes_replace_keys():
    rec = TrainRecord.from_json(train_record())
    assert rec.data.shape == [1461, 16, 16, 7] and rec.distribution.replicas == 1 and rec.samples_per_s is None
    board = Leaderboard.from_json(leaderboard())
    assert isinstance(board["fc"], Scored) and isinstance(board["gru"], Skipped)
    assert list(board.scored()) == ["fc", "climatology"] and list(board.skipped()) == ["gru"]
    assert board.val_of("fc")["1"]["rmse"] == 0.021 and board.val_of("fc")["2"]["rmse"] == 0.034
    assert board.val_of("climatology") == {} and board.val_of("gru") == {}
    assert board.overall_of("climatology")["2"]["rmse"] == 0.034 and board.leads() == [1, 2]
    assert Leaderboard.from_json({"gru": leaderboard()["gru"]}).leads() == []  # nothing scored: no lead axis
    assert board.overall_of("nope") == {} and "fc" in board and "nope" not in board
    with pytest.raises(KeyError, match=r"'nope' is not in the evaluation metrics \(models: \['climatology', 'fc', 'gru'\]\)"):
        board["nope"]
    d = Decision.from_json(decision(winner=False))
    assert d.blessed is False and d.winner is None and d.winner_score is None and d.weakest_lead is None
    assert "winner_score" not in d.to_json()  # a key the gate did not reach stays out of the file
    won = Decision.from_json(decision())
    assert won.weakest_lead == 2 and won.skill_vs_best_reference == {"1": 0.4, "2": 0.2}
    assert won.best_reference["2"] == "damped_persistence" and won.validation["2"]["rmse"] == 0.034


def _without(data: dict, *path: str) -> dict:
    data = copy.deepcopy(data)
    inner = data
    for key in path[:-1]:
        inner = inner[key]
    del inner[path[-1]]
    return data


BAD = [
    (TrainRecord, _without(train_record(), "fingerprint"), r"fingerprint: Field required"),
    (TrainRecord, _without(train_record(), "data", "shape"), r"data\.shape: Field required"),
    (TrainRecord, {**train_record(), "log1p_precip": True}, r"log1p_precip: unknown key"),
    (Leaderboard, _without(leaderboard(), "fc", "n_windows"), r"fc\.ok\.n_windows: Field required"),
    (Leaderboard, {"fc": {"status": "done"}}, r"fc: .*'ok', 'skipped'"),
    (Leaderboard, _without(leaderboard(), "fc", "leads"), r"fc\.ok\.leads: Field required"),
    # a metrics.json from before the lead axis: one block, not one per lead
    (Leaderboard, {"fc": {**leaderboard()["fc"], "overall": BLOCK}}, r"fc\.ok\.overall\.rmse: Input should be a valid dictionary"),
    (Leaderboard, {"fc": {**leaderboard()["fc"], "valid_period": ["2013-01-08", "2013-12-31"]}},
     r"fc\.ok\.valid_period: unknown key"),
    (Decision, _without(decision(), "blessed"), r"blessed: Field required"),
    (Decision, _without(decision(), "winner_score"), r"winner 'fc' without \['winner_score'\]"),
    (Decision, {**decision(), "skill_vs_climatology": 0.41}, r"skill_vs_climatology: unknown key"),
    (Decision, _without(decision(), "best_reference"), r"best_reference: Field required"),
]


@pytest.mark.parametrize("cls, data, message", BAD)
def test_a_file_of_another_format_is_refused_naming_file_and_key(tmp_path, cls, data, message):
    path = tmp_path / "record.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match=message) as err:
        cls.read(path)
    assert str(path) in str(err.value) and f"not a valid {cls.WHAT}" in str(err.value)


@pytest.mark.parametrize("cls", [TrainRecord, Leaderboard, Decision])
def test_missing_or_unreadable_file(tmp_path, cls):
    with pytest.raises(FileNotFoundError, match=rf"missing\.json: {cls.WHAT} not found \(run it\)"):
        cls.read(tmp_path / "missing.json", "run it")
    (tmp_path / "cut.json").write_text('{"model": ')
    with pytest.raises(RecordError, match=rf"cut\.json: {cls.WHAT} is not valid JSON"):
        cls.read(tmp_path / "cut.json")


def test_evaluate_refuses_a_network_whose_record_is_of_another_format(tiny_cfg):
    from soilcast.evaluation.evaluate import stale_reason
    from soilcast.layout import RunDir

    run = tiny_cfg.paths.artifacts_dir / "train" / "fc"
    run.mkdir(parents=True)
    (run / "record.json").write_text(json.dumps(_without(train_record(), "fingerprint")))
    why = stale_reason(tiny_cfg, tiny_cfg.paths.processed, RunDir(run), "fc", tensors=None)
    assert str(run / "record.json") in why and "fingerprint: Field required" in why
    assert "soilcast train --model fc" in why
