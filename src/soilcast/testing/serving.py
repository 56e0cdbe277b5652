"""Helpers for the serving tests: stand-in model versions, broken versions, gateways, scrapes,
and a frozen server (accepts calls, never answers) for the clients' deadlines."""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from soilcast.config import Config
from soilcast.testing.standin import demo_mask, synthetic_meteo, write_standin_for

RAISE = object()


def publish(cfg: Config, version: int, offset: float = 0.0, grid: Any = None, weather: bool = False,
            quantile_levels: Sequence[float] | None = None) -> Path:
    """A stand-in version under cfg.paths.models_dir (atomic, like the exporter); ``weather``:
    one trained with the lead days' weather (``forecast_with_weather``); ``quantile_levels``:
    a probabilistic one with ``forecast_products`` (default: a point version without products)."""
    return write_standin_for(cfg, version, offset=offset, grid=grid, weather=weather,
                             quantile_levels=quantile_levels)


def publish_broken(cfg: Config, version: int, kind: str) -> Path:
    """A version that must be refused: ``corrupt`` graph, ``nan`` output, ``no_metadata``."""
    models = Path(cfg.paths.models_dir)
    if kind == "nan":
        return publish(cfg, version, offset=float("nan"))
    staging = models / f".staging-{version}"
    shutil.copytree(models / str(max(int(p.name) for p in models.iterdir() if p.name.isdigit())), staging)
    if kind == "corrupt":
        (staging / "saved_model.pb").write_bytes(b"this is not a protobuf")
    elif kind == "no_metadata":
        (staging / "assets.extra" / "soilcast_metadata.json").unlink()
    else:
        raise ValueError(kind)
    staging.rename(models / str(version))
    return models / str(version)


def grid_mask(cfg: Config) -> np.ndarray:
    return demo_mask(*cfg.grid.shape)


def meteo(cfg: Config, rng: np.random.Generator, batch: int = 1, **shift: float) -> np.ndarray:
    """Requests as a client cuts them from the store: [batch, L, H, W, C], weather everywhere."""
    return synthetic_meteo(rng, (batch, cfg.window.seq_len, *cfg.grid.shape), cfg.variables,
                           None, **shift)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} from a /metrics endpoint on 127.0.0.1."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric(samples: dict, sample: str, default: float = 0.0, **labels: str) -> float:
    """Sum of the samples named ``sample`` whose labels include ``labels`` (PromQL's
    ``sum(sample{labels})``); ``default`` when none matches."""
    want = set(labels.items())
    values = [v for (name, lab), v in samples.items() if name == sample and want <= set(lab)]
    return sum(values) if values else default


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


@contextlib.contextmanager
def gateway(cfg: Config, **kwargs: Any) -> Iterator[Any]:
    from soilcast.serving.gateway import Gateway

    gw = Gateway(cfg, **kwargs).start()
    try:
        yield gw
    finally:
        gw.stop(grace=0)


def client(gw: Any, **kwargs: Any) -> Any:
    from soilcast.serving.client import SoilcastClient

    return SoilcastClient(gw.target, gw.cfg.serving.model_name, timeout=30,
                          max_message_bytes=gw.cfg.serving.max_message_mb << 20, **kwargs)


def metadata_json(version_dir: Path) -> dict[str, Any]:
    return json.loads((Path(version_dir) / "assets.extra" / "soilcast_metadata.json").read_text())


def client_for(target: str, **kwargs: Any) -> Any:
    from soilcast.serving.client import SoilcastClient

    return SoilcastClient(target, timeout=30, **kwargs)


@contextlib.contextmanager
def frozen_server() -> Iterator[str]:
    """A real gRPC server on a free loopback port whose every method accepts the call and never
    answers (its handlers block until the server stops): what a client sees of a hung gateway.
    Yields its target ``"127.0.0.1:<port>"``; only a client deadline ends a call to it."""
    from concurrent import futures

    import grpc

    stopping = threading.Event()

    def never_answer(request: bytes, context: Any) -> bytes:
        stopping.wait()
        return b""

    class Frozen(grpc.GenericRpcHandler):
        def service(self, handler_call_details: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(never_answer)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="soilcast-frozen"),
                         handlers=[Frozen()], options=[("grpc.so_reuseport", 0)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stopping.set()
        server.stop(0).wait()
