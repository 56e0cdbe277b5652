"""The gRPC client against a real gateway over loopback: what the client adds on top of the
protocol (batch axis, float32 requests, version pinning, metadata and signatures as dicts,
message-size option) and how the server's refusals reach its caller."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from soilcast.contract import PRODUCTS_SIGNATURE, SIGNATURE
from soilcast.serving.client import SoilcastClient, read_certificate
from soilcast.testing.config import tiny_config
from soilcast.testing.serving import client, frozen_server, gateway, grid_mask, meteo, metric, publish, scrape
from soilcast.testing.standin import standin_numpy

pytestmark = pytest.mark.timeout(120)

OFFSETS = {1: 0.0, 2: 1.0}  # stand-in versions: same formula, shifted logits


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    cfg = tiny_config(tmp_path_factory.mktemp("client"))
    for version, offset in OFFSETS.items():
        publish(cfg, version, offset=offset)
    with gateway(cfg) as gw:
        yield gw


def _expected(cfg, x, version):
    return standin_numpy(x, grid_mask(cfg), cfg.variable_names, OFFSETS[version])


def test_predict_answers_the_latest_version_for_every_window(served):
    cfg = served.cfg
    x = meteo(cfg, np.random.default_rng(1), batch=3)
    with client(served) as c:
        y = c.predict(x)
        assert c.last_version == 2
    assert y.shape == (3, *cfg.grid.shape) and y.dtype == np.float32
    np.testing.assert_allclose(y, _expected(cfg, x, 2), rtol=1e-5, atol=1e-6)  # NaN where NaN


def test_a_single_window_is_the_same_answer_as_a_batch_of_one(served):
    x = meteo(served.cfg, np.random.default_rng(2), batch=2)
    with client(served) as c:
        batch = c.predict(x)
        one = c.predict(x[1])
    np.testing.assert_array_equal(one, batch[1])


def test_float64_windows_are_sent_as_float32(served):
    """The gateway refuses DT_DOUBLE; the client converts, so numpy's default dtype works."""
    x = meteo(served.cfg, np.random.default_rng(3))
    with client(served) as c:
        np.testing.assert_array_equal(c.predict(x.astype(np.float64)), c.predict(x))


def test_version_pinning_reaches_predict_metadata_and_status(served):
    cfg = served.cfg
    x = meteo(cfg, np.random.default_rng(4))
    with client(served, version=1) as c:
        y = c.predict(x)
        assert c.last_version == 1
        md, status = c.metadata(), c.status()
    np.testing.assert_allclose(y, _expected(cfg, x, 1), rtol=1e-5, atol=1e-6)
    assert md["served_version"] == 1 and md["offset"] == 0.0
    assert [s["version"] for s in status] == [1] and status[0]["state"] == "AVAILABLE"
    with client(served) as c:
        assert [s["version"] for s in c.status()] == [1, 2] and c.metadata()["served_version"] == 2


def test_metadata_and_signature_describe_what_to_send(served):
    cfg = served.cfg
    h, w = cfg.grid.shape
    with client(served) as c:
        md, sig = c.metadata(), c.signature(SIGNATURE)
        with pytest.raises(KeyError, match=rf"signature '{PRODUCTS_SIGNATURE}' not served \(has \['{SIGNATURE}'\]\)"):
            c.signature(PRODUCTS_SIGNATURE)  # the stand-in was exported without products
    assert md["variables"] == cfg.variable_names and md["seq_len"] == cfg.window.seq_len
    assert md["units"] == {**{v.name: v.canonical_units for v in cfg.variables}, "soil_moisture": "m3/m3"}
    K = len(cfg.window.leads)
    assert md["leads"] == list(cfg.window.leads) and c.leads() == list(cfg.window.leads)
    assert sig == {"inputs": {"meteo": {"dtype": 1, "shape": [-1, cfg.window.seq_len, h, w, len(cfg.variables)]}},
                   "outputs": {"soil_moisture": {"dtype": 1, "shape": [-1, h, w]},  # 1: DT_FLOAT
                               "soil_moisture_by_lead": {"dtype": 1, "shape": [-1, K, h, w]}}}


def test_predict_by_lead_answers_every_lead_and_predict_the_first(served):
    cfg = served.cfg
    K = len(cfg.window.leads)
    x = meteo(cfg, np.random.default_rng(7), batch=2)
    with client(served) as c:
        y, first, one = c.predict_by_lead(x), c.predict(x), c.predict_by_lead(x[1])
    assert y.shape == (2, K, *cfg.grid.shape) and y.dtype == np.float32 and one.shape == (K, *cfg.grid.shape)
    want = standin_numpy(x, grid_mask(cfg), cfg.variable_names, OFFSETS[2], n_leads=K)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(y[:, 0], first)
    np.testing.assert_array_equal(one, y[1])


def test_an_export_from_before_the_lead_axis_answers_one_lead(tmp_path):
    """A version without ``leads`` (metadata ``lead_days: 1``, only ``soil_moisture``):
    predict_by_lead gives a lead axis of length 1, and predict_products would send [b]."""
    from soilcast.testing.standin import write_standin

    cfg = tiny_config(tmp_path)
    lat, lon = np.asarray(cfg.grid.lats), np.asarray(cfg.grid.lons)
    write_standin(cfg.paths.models_dir / "1", seq_len=cfg.window.seq_len, lat=lat, lon=lon, mask=grid_mask(cfg),
                  variables=list(cfg.variables), units={v.name: v.canonical_units for v in cfg.variables},
                  psi_bins=cfg.serving.psi_bins)
    x = meteo(cfg, np.random.default_rng(8), batch=2)
    with gateway(cfg, drift=False) as gw, client(gw) as c:
        y, first = c.predict_by_lead(x), c.predict(x)
        assert c.leads() == [1] and "leads" not in c.metadata()
        assert c._valid_days(np.array([[5], [6]], np.int32), 2).shape == (2,)
    assert y.shape == (2, 1, *cfg.grid.shape)
    np.testing.assert_array_equal(y[:, 0], first)


def test_products_valid_days_must_match_the_served_leads(served):
    """[b, K] is sent as such; one day per window for a K-lead version is refused before
    anything goes on the wire, naming the shape the served version takes."""
    cfg = served.cfg
    K = len(cfg.window.leads)
    x = meteo(cfg, np.random.default_rng(9), batch=2)
    with client(served) as c:
        assert c._valid_days(np.arange(2 * K, dtype=np.int32), 2).shape == (2, K)
        with pytest.raises(ValueError, match=rf"valid_day_of_year has shape \[2\].*leads .*expected \[2, {K}\]"):
            c.predict_products(x, [180, 181])


def _refusal(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value


def test_refusals_reach_the_caller_with_the_servers_reason(served):
    cfg = served.cfg
    x = meteo(cfg, np.random.default_rng(5))
    with client(served) as c:
        err = _refusal(lambda: c.predict(x[..., :-1]))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "expected [batch>=1" in err.details()
        err = _refusal(lambda: c.predict_products(x, [list(range(180, 180 + len(cfg.window.leads)))]))
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f"has no '{PRODUCTS_SIGNATURE}' signature; use '{SIGNATURE}'" in err.details()
    with client(served, version=9) as c:
        err = _refusal(lambda: c.predict(x))
        assert err.code() == grpc.StatusCode.NOT_FOUND and "available: [1, 2]" in err.details()
    with SoilcastClient(served.target, "other", timeout=30) as c:
        err = _refusal(c.metadata)
        assert err.code() == grpc.StatusCode.NOT_FOUND and "serves 'soilcast'" in err.details()


def test_message_limit_applies_on_the_client_side(served):
    x = meteo(served.cfg, np.random.default_rng(6))
    with client(served) as c:
        assert c.predict(x).shape[0] == 1
    with SoilcastClient(served.target, served.cfg.serving.model_name, timeout=30, max_message_bytes=1024) as c:
        err = _refusal(lambda: c.predict(x))
    assert x.nbytes > 1024 and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_closed_client_refuses_calls(served):
    c = client(served)
    with c:
        c.status()
    with pytest.raises(ValueError, match="closed channel"):
        c.status()


def test_the_traffic_marker_goes_with_every_call(served):
    """A verification client says so on every call (metadata ``soilcast-traffic``), so the
    gateway keeps all of them out of live drift; the default is live."""
    x = meteo(served.cfg, np.random.default_rng(7))

    def counts() -> dict[str, float]:
        samples = scrape(served.metrics_port)
        return {t: metric(samples, "soilcast_requests_by_traffic_total", traffic=t) for t in ("live", "verification")}

    before = counts()
    with client(served, traffic="verification") as c:
        c.predict(x)
        c.metadata()
        c.signature()
        c.status()
    after = counts()
    assert after == {"live": before["live"], "verification": before["verification"] + 4}
    with client(served) as c:
        assert c.traffic == "live"
        c.status()
    assert counts()["live"] == after["live"] + 1


def test_every_call_fails_at_the_deadline_on_a_frozen_server():
    """A server that accepts calls and never answers: each RPC ends with DEADLINE_EXCEEDED at
    the client's ``timeout`` instead of waiting forever."""
    x = np.zeros((1, 2, 3, 3, 2), np.float32)
    with frozen_server() as target, SoilcastClient(target, timeout=0.3) as c:
        calls = {"predict": lambda: c.predict(x), "metadata": c.metadata, "signature": c.signature,
                 "status": c.status, "predict_products": lambda: c.predict_products(x, [1])}
        for name, call in calls.items():
            assert _refusal(call).code() == grpc.StatusCode.DEADLINE_EXCEEDED, name


def test_read_certificate(tmp_path):
    pem = tmp_path / "ca.pem"
    pem.write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    assert read_certificate(pem) == pem.read_bytes() and read_certificate(None) is None
