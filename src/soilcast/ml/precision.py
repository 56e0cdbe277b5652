"""``training.precision: auto`` -> the dtype policy this host should train in.

Why: bfloat16 pays only where the hardware has bf16 units. On an AVX2-only CPU oneDNN
emulates bf16 and training runs about 3x *slower* than float32; on a CPU with
``avx512_bf16`` or AMX (``amx_bf16``), or on a GPU of compute capability >= 8.0 (Ampere
and later), ``mixed_bfloat16`` is the fast path and matches float32 accuracy within the
throughput benchmark's 2 % check. float16 is never picked automatically: it needs loss
scaling and its narrow range has no advantage over bf16 on this hardware.

The decision is a pure function of the CPU flags and the GPUs' compute capabilities so it
can be tested with injected values; the probes that read them are separate and small.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from soilcast.config import Config

log = logging.getLogger(__name__)

AUTO = "auto"
FLOAT32 = "float32"
BFLOAT16 = "mixed_bfloat16"
EXPLICIT = ("float32", "mixed_bfloat16", "mixed_float16")
CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
MIN_BF16_COMPUTE_CAPABILITY = (8, 0)
CPUINFO = Path("/proc/cpuinfo")


def read_cpu_flags(cpuinfo: Path = CPUINFO) -> set[str]:
    """The CPU feature flags of the first ``flags`` line of ``cpuinfo`` (empty if unreadable:
    not Linux, or a sandbox without /proc -- then bf16 is not assumed)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def _parse_capability(value: object) -> tuple[int, int] | None:
    """``(8, 0)``, ``"8.0"`` or ``"sm_80"``-like values -> (major, minor); None if unknown."""
    if isinstance(value, tuple | list) and len(value) == 2:
        try:
            return int(value[0]), int(value[1])
        except (TypeError, ValueError):
            return None
    if isinstance(value, str):
        text = value.strip().removeprefix("sm_")
        major, sep, minor = text.partition(".")
        if not sep and len(text) >= 2 and text.isdigit():
            major, minor = text[:-1], text[-1]
        try:
            return int(major), int(minor or 0)
        except ValueError:
            return None
    return None


def gpu_capabilities() -> list[tuple[int, int]]:
    """Compute capabilities of the GPUs the current Keras backend sees ([] if none).

    Uses the backend's own device listing (TensorFlow or JAX) without running an op, so it
    can be called before a distribution strategy is created. A GPU whose capability cannot
    be read counts as (0, 0): unknown hardware does not get bf16.
    """
    import keras

    backend = keras.backend.backend()
    caps: list[tuple[int, int]] = []
    if backend == "tensorflow":
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(gpu)
            caps.append(_parse_capability(details.get("compute_capability")) or (0, 0))
    elif backend == "jax":
        import jax

        for dev in jax.devices():
            if dev.platform == "gpu":
                caps.append(_parse_capability(getattr(dev, "compute_capability", None)) or (0, 0))
    return caps


def resolve_precision(
    setting: str,
    cpu_flags: Iterable[str] | None = None,
    gpus: Iterable[object] | None = None,
) -> str:
    """``setting`` unless it is ``auto``; then ``mixed_bfloat16`` if a GPU with compute
    capability >= 8.0 is visible or the CPU flags contain ``avx512_bf16``/``amx_bf16``,
    else ``float32``.

    ``cpu_flags``/``gpus`` (compute capabilities as ``(major, minor)`` or ``"8.0"``) are
    probed from /proc/cpuinfo and the Keras backend when None; tests inject them.
    """
    if setting != AUTO:
        if setting not in EXPLICIT:
            raise ValueError(f"training.precision: {setting!r} is not one of {[AUTO, *EXPLICIT]}")
        return setting
    caps = [_parse_capability(g) or (0, 0) for g in (gpu_capabilities() if gpus is None else gpus)]
    if caps:  # training runs on the GPUs when there are any: their capability decides
        return BFLOAT16 if min(caps) >= MIN_BF16_COMPUTE_CAPABILITY else FLOAT32
    flags = set(read_cpu_flags() if cpu_flags is None else cpu_flags)
    return BFLOAT16 if flags & CPU_BF16_FLAGS else FLOAT32


def with_resolved_precision(cfg: Config) -> Config:
    """``cfg`` with ``training.precision`` resolved for this host, logged once.

    Training builds, fingerprints and records the resolved value, so ``record.json`` says
    which policy actually ran and a checkpoint is never resumed under another precision.
    """
    setting = cfg.training.precision
    chosen = resolve_precision(setting)
    if setting == AUTO:
        log.info("training.precision auto -> %s", chosen)
    else:
        log.info("training.precision %s (set explicitly)", chosen)
    if chosen == setting:
        return cfg
    return cfg.model_copy(update={"training": cfg.training.model_copy(update={"precision": chosen})})
