"""The four serving paths from a client's side, and a stand-in with the default two inputs.

TF Serving gRPC, TF Serving REST, OIP REST and OIP gRPC: :class:`Caller` makes one inference
over any of them (what the mixed-protocol test and ``benchmarks/serve_protocols.py`` drive),
:func:`identical` compares answers to the last bit.

Why: params.yaml's default window takes antecedent soil moisture, so the request every client
(and the serving README) starts with has two inputs, while :mod:`soilcast.testing.standin`
writes the paper's one-input contract. :func:`publish_two_input` writes the stand-in (same metadata, grid,
drift reference) with its graph replaced by one that takes both inputs: each lead is the last
antecedent day plus a small weather term and a per-lead step, NaN outside the mask, inside the
target's range. The serving tests and ``benchmarks/serve_protocols.py`` speak to it over every
protocol.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from soilcast.contract import ANTECEDENT, INPUT

WEATHER_GAIN = 0.01  # m3/m3 for a one-standard-deviation warm anomaly: visible, never dominant
LEAD_STEP = 0.002  # m3/m3 per lead, so the leads differ


def _save_graph(path: Path, seq_len: int, mask: np.ndarray, n_vars: int, n_leads: int,
                output_range: tuple[float, float]) -> None:
    import tensorflow as tf

    lo, hi = output_range
    steps = tf.constant(LEAD_STEP * np.arange(n_leads), tf.float32)[None, :, None, None]

    class TwoInputs(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((None, seq_len, *mask.shape, n_vars), tf.float32, name=INPUT),
                                      tf.TensorSpec((None, seq_len, *mask.shape), tf.float32, name=ANTECEDENT)])
        def serve(self, meteo, antecedent_soil_moisture):
            last = tf.where(mask, antecedent_soil_moisture[:, -1], 0.0)
            warm = tf.tanh(tf.reduce_mean(meteo[..., 0], axis=1) / 300.0 - 1.0)
            yk = tf.clip_by_value(last[:, None] + WEATHER_GAIN * warm[:, None] + steps, lo, hi)
            yk = tf.where(mask, yk, np.float32(np.nan))
            return {"soil_moisture": yk[:, 0], "soil_moisture_by_lead": yk}

    module = TwoInputs()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve.get_concrete_function()})


def publish_two_input(cfg: Any, version: int) -> Path:
    """Version ``version`` under cfg's models folder taking both inputs, published atomically."""
    from soilcast.layout import Layout
    from soilcast.testing.standin import write_standin_for

    final = Layout.from_config(cfg).version(version).root
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent.parent) as staging:
        staged_cfg = cfg.model_copy(update={"paths": cfg.paths.model_copy(update={"models_dir": Path(staging)})})
        root = write_standin_for(staged_cfg, version, quantile_levels=None)
        meta_path = root / "assets.extra" / "soilcast_metadata.json"
        meta = json.loads(meta_path.read_text())
        meta[ANTECEDENT] = True
        meta["inputs"][ANTECEDENT] = [None, cfg.window.seq_len, *cfg.grid.shape]
        for item in root.iterdir():  # the graph goes, the assets stay
            if item.name != "assets.extra":
                shutil.rmtree(item) if item.is_dir() else item.unlink()
        _save_graph(root, cfg.window.seq_len, np.asarray(meta["mask"], bool), len(meta["variables"]),
                    len(meta["leads"]), tuple(cfg.target.physical_range))
        meta_path.write_text(json.dumps(meta))
        root.rename(final)
    return final


def two_inputs(cfg: Any, rng: np.random.Generator, batch: int = 1) -> dict[str, np.ndarray]:
    """The default request: weather [batch, L, H, W, C] and antecedent soil moisture
    [batch, L, H, W] (inside the target's range in the mask, NaN outside, as the store holds it)."""
    from soilcast.testing.serving import grid_mask, meteo

    x = meteo(cfg, rng, batch)
    lo, hi = cfg.target.physical_range
    sm = rng.uniform(lo + 0.1, hi / 2, x.shape[:-1]).astype(np.float32)
    sm[:, :, ~grid_mask(cfg)] = np.nan
    return {INPUT: x, ANTECEDENT: sm}


def tfs_grpc_outputs(gw: Any, x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``serving_default``'s outputs by name over TF Serving's gRPC API (the reference path)."""
    caller = Caller(gw, "tfs_grpc")
    try:
        return caller.infer(x)
    finally:
        caller.close()


def identical(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    """Every output float32 and identical to the last bit (NaN outside the mask in the same cells)."""
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype == np.float32 and a[k].shape == b[k].shape
        and np.array_equal(a[k], b[k], equal_nan=True) for k in a)


PROTOCOLS = ("tfs_grpc", "tfs_rest", "oip_rest", "oip_grpc")


class Caller:
    """One client of the gateway ``gw`` over ``protocol``; :meth:`infer` answers the outputs by
    name or raises :class:`Refused` with the protocol's status (gRPC code name or HTTP status)."""

    def __init__(self, gw: Any, protocol: str) -> None:
        import grpc

        from soilcast.serving.oip import grpc_predict_v2_pb2_grpc as pb_grpc
        from soilcast.testing.serving import client

        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol {protocol!r}; expected one of {PROTOCOLS}")
        self.gw, self.protocol = gw, protocol
        self.tfs = client(gw)
        self.channel = grpc.insecure_channel(gw.target, options=[("grpc.max_receive_message_length", gw.max_bytes)])
        self.oip = pb_grpc.GRPCInferenceServiceStub(self.channel)

    def infer(self, x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import grpc

        try:
            return getattr(self, f"_{self.protocol}")(x)
        except grpc.RpcError as err:
            raise Refused(err.code().name) from None

    def _tfs_grpc(self, x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out, _ = self.tfs._predict(x[INPUT], {k: v for k, v in x.items() if k != INPUT})
        return out

    def _post(self, path: str, body: dict) -> dict:
        import urllib.error
        import urllib.request

        req = urllib.request.Request(f"http://127.0.0.1:{self.gw.rest_port}{path}", data=json.dumps(body).encode(),
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:
            raise Refused(str(err.code)) from None

    def _tfs_rest(self, x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        name = self.gw.cfg.serving.model_name
        out = self._post(f"/v1/models/{name}:predict", {"inputs": {k: v.tolist() for k, v in x.items()}})["outputs"]
        return {k: np.asarray(v, np.float32) for k, v in out.items()}

    def _oip_rest(self, x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        body = {"inputs": [{"name": k, "shape": list(v.shape), "datatype": "FP32", "data": v.ravel().tolist()}
                           for k, v in x.items()]}
        out = self._post(f"/v2/models/{self.gw.cfg.serving.model_name}/infer", body)["outputs"]
        return {o["name"]: np.asarray(o["data"], np.float32).reshape(o["shape"]) for o in out}

    def _oip_grpc(self, x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from soilcast.serving.oip import grpc_predict_v2_pb2 as pb

        req = pb.ModelInferRequest(model_name=self.gw.cfg.serving.model_name)
        for name, array in x.items():
            req.inputs.add(name=name, datatype="FP32", shape=list(array.shape))
            req.raw_input_contents.append(np.ascontiguousarray(array, "<f4").tobytes())
        resp = self.oip.ModelInfer(req, timeout=120)
        return {o.name: np.frombuffer(raw, "<f4").reshape(o.shape).astype(np.float32)
                for o, raw in zip(resp.outputs, resp.raw_output_contents)}

    def close(self) -> None:
        self.tfs.close()
        self.channel.close()


class Refused(Exception):
    """A call the gateway refused; ``status`` is the gRPC code name or the HTTP status."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status
