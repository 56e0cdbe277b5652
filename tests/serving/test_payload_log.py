"""The payload log through a real gateway: every sampled Predict of either API is one JSON line
that decodes back to what was sent and answered; off by default; rotated by size."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest

from soilcast.serving.payload_log import FILE_NAME, MiB, decode_tensor, encode_tensor
from soilcast.testing.config import tiny_config
from soilcast.testing.serving import client, gateway, meteo, publish

pytestmark = pytest.mark.timeout(120)


def _config(tmp_path, **payload_log):
    return tiny_config(tmp_path, {"serving": {"payload_log": {"enabled": True, "sample_rate": 1.0, **payload_log}}})


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _post(gw, body: dict, headers: dict[str, str]) -> dict:
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{gw.rest_port}/v1/models/soilcast/labels/stable:predict",
                                 json.dumps(body).encode(), {"Content-Type": "application/json", **headers})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def test_every_sampled_predict_of_both_apis_replays_to_what_was_sent(tmp_path):
    cfg = _config(tmp_path)
    publish(cfg, 1)
    rng = np.random.default_rng(50)
    x, z = meteo(cfg, rng, batch=2), meteo(cfg, rng)
    with gateway(cfg) as gw:
        with client(gw, traffic="hindcast", version=1) as c:
            y = c.predict_by_lead(x)
            with pytest.raises(grpc.RpcError):
                c.predict(x[:, :, :-1])  # refused: logged with its code, no outputs
        rest = _post(gw, {"inputs": z.tolist()}, {"X-Soilcast-Traffic": "verification"})
        assert gw.payloads.flush(30)
        path = gw.payloads.path
        lines = _lines(path)
    assert path == cfg.serving.payload_log.dir / FILE_NAME
    assert len(lines) == 3
    grpc_ok, refused, by_rest = lines
    assert {k: grpc_ok[k] for k in ("protocol", "method", "model", "version", "version_label", "served_version",
                                    "signature", "traffic", "code")} == {
        "protocol": "tfs_grpc", "method": "Predict", "model": "soilcast", "version": 1, "version_label": None,
        "served_version": 1, "signature": "serving_default", "traffic": "hindcast", "code": "OK"}
    assert grpc_ok["time"].endswith("+00:00") and grpc_ok["latency_seconds"] > 0
    sent = decode_tensor(grpc_ok["inputs"]["meteo"])
    assert sent.dtype == np.float32 and np.array_equal(sent, x.astype(np.float32), equal_nan=True)
    np.testing.assert_array_equal(decode_tensor(grpc_ok["outputs"]["soil_moisture_by_lead"]), y)
    assert refused["code"] == "INVALID_ARGUMENT" and refused["outputs"] == {} and refused["served_version"] is None
    assert decode_tensor(refused["inputs"]["meteo"]).shape == x[:, :, :-1].shape
    assert {k: by_rest[k] for k in ("protocol", "version_label", "served_version", "traffic", "code")} == {
        "protocol": "tfs_rest", "version_label": "stable", "served_version": 1, "traffic": "verification", "code": "OK"}
    np.testing.assert_array_equal(decode_tensor(by_rest["inputs"]["meteo"]), z.astype(np.float32))
    served = decode_tensor(by_rest["outputs"]["soil_moisture"])
    np.testing.assert_allclose(np.asarray(rest["outputs"]["soil_moisture"], np.float32), served, rtol=1e-6)


def test_off_by_default_nothing_is_written(tmp_path):
    cfg = tiny_config(tmp_path)
    assert cfg.serving.payload_log.enabled is False  # params.yaml's default
    publish(cfg, 1)
    with gateway(cfg) as gw, client(gw) as c:
        c.predict(meteo(cfg, np.random.default_rng(51)))
        assert gw.payloads is None
    assert not cfg.serving.payload_log.dir.exists()


def test_the_sample_is_drawn_from_the_seed(tmp_path):
    """sample_rate 0.5: the same requests keep the same share of lines, run after run."""
    kept = []
    for run in range(2):
        cfg = _config(tmp_path / str(run), sample_rate=0.5)
        publish(cfg, 1)
        with gateway(cfg) as gw, client(gw) as c:
            for i in range(12):
                c.predict(meteo(cfg, np.random.default_rng(i)))
            assert gw.payloads.flush(30)
            kept.append([decode_tensor(r["inputs"]["meteo"])[0, 0, 0, 0, 0] for r in _lines(gw.payloads.path)])
    assert 0 < len(kept[0]) < 12 and kept[0] == kept[1]


def test_the_file_rotates_at_max_mb_keeping_backups(tmp_path):
    """max_mb 1, backups 1: past 1 MiB the file rolls over to payloads.jsonl.1, no file grows
    past the limit, and only one backup is kept."""
    cfg = _config(tmp_path, max_mb=1, backups=1)
    publish(cfg, 1)
    x = meteo(cfg, np.random.default_rng(52), batch=4)
    with gateway(cfg) as gw, client(gw) as c:
        for _ in range(12):
            c.predict(x)
        assert gw.payloads.flush(30)
        one_line = len(gw.payloads.path.read_text().splitlines()[0]) + 1
    folder = cfg.serving.payload_log.dir
    assert 12 * one_line > 2 * MiB  # enough to roll over more than once
    assert sorted(p.name for p in folder.iterdir()) == [FILE_NAME, f"{FILE_NAME}.1"]
    sizes = [p.stat().st_size for p in folder.iterdir()]
    assert all(size <= MiB for size in sizes), sizes
    assert all(_lines(p) for p in folder.iterdir())  # whole lines on both sides of a rotation


def test_a_tensor_round_trips_through_its_little_endian_base64():
    for array in (np.arange(6, dtype=">f4").reshape(2, 3), np.array([[1, 2]], np.int32), np.float32([np.nan])):
        entry = encode_tensor(array)
        assert entry["shape"] == list(array.shape)
        back = decode_tensor(json.loads(json.dumps(entry)))
        assert np.array_equal(back, array, equal_nan=True) and back.dtype == array.dtype.newbyteorder("=")
