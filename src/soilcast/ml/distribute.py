"""Choose the tf.distribute strategy (TensorFlow backend only; other backends run locally).

* ``TF_CONFIG`` naming a cluster of several tasks (a Kubeflow TFJob sets it) ->
  ``MultiWorkerMirroredStrategy``: every worker trains a replica, gradients are all-reduced.
  The chief (task ``chief``, or ``worker`` 0 when there is none) writes the artifacts;
  the other workers write theirs to a scratch folder.
* several visible GPUs -> ``MirroredStrategy``; otherwise the default strategy.

A multi-worker strategy must exist before TensorFlow runs any op, and only once per
process, so the choice is made once and cached; call :func:`get_distribution` first.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from typing import Any

import keras


@dataclass(frozen=True)
class Distribution:
    strategy: Any  # tf.distribute.Strategy or None (non-TF backends)
    kind: str  # "multi_worker" | "mirrored" | "default" | "none"
    replicas: int
    is_chief: bool
    worker_index: int

    def scope(self) -> contextlib.AbstractContextManager:
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()


_CACHED: Distribution | None = None


def cluster_role(tf_config: str | None) -> tuple[int, bool, int]:
    """(number of tasks, is chief, worker index) from a TF_CONFIG JSON string."""
    if not tf_config:
        return 1, True, 0
    spec = json.loads(tf_config)
    cluster = spec.get("cluster", {})
    n = sum(len(v) for k, v in cluster.items() if k in ("chief", "worker"))
    task = spec.get("task", {})
    ttype, index = task.get("type", "worker"), int(task.get("index", 0))
    is_chief = ttype == "chief" or (ttype == "worker" and index == 0 and "chief" not in cluster)
    return n, is_chief, index


def get_distribution() -> Distribution:
    global _CACHED
    if _CACHED is None:
        _CACHED = _choose()
    return _CACHED


def _choose() -> Distribution:
    if keras.backend.backend() != "tensorflow":
        return Distribution(None, "none", 1, True, 0)
    import tensorflow as tf

    n_tasks, is_chief, index = cluster_role(os.environ.get("TF_CONFIG"))
    if n_tasks > 1:
        strategy = _multi_worker_strategy()
        return Distribution(strategy, "multi_worker", strategy.num_replicas_in_sync, is_chief, index)
    if len(tf.config.list_physical_devices("GPU")) > 1:
        strategy = tf.distribute.MirroredStrategy()
        return Distribution(strategy, "mirrored", strategy.num_replicas_in_sync, True, 0)
    return Distribution(tf.distribute.get_strategy(), "default", 1, True, 0)


def _multi_worker_strategy() -> Any:
    """MultiWorkerMirroredStrategy adapted to how Keras 3's TensorFlow trainer calls it.

    Keras 3 calls ``strategy.reduce`` (a) on a whole ``(x, y)`` batch structure while
    building the model and (b) with ``axis=0`` on scalar metric values after each step;
    TF's multi-worker strategy reduces single values only and rejects axis 0 on scalars
    (tensorflow/tensorflow#72388). Reduce leaf by leaf, across replicas for scalars.
    """
    import tensorflow as tf

    class KerasMultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op: Any, value: Any, axis: Any = None) -> Any:
            parent = super()

            def leaf(v: Any) -> Any:
                local = self.experimental_local_results(v)[0]
                rank = getattr(getattr(local, "shape", None), "rank", None)
                return parent.reduce(reduce_op, v, axis if rank else None)

            return tf.nest.map_structure(leaf, value)

    return KerasMultiWorkerMirroredStrategy()
