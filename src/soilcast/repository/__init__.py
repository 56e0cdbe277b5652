"""The model repository on disk, as TF Serving reads it: what export writes and serving reads.

``versions`` (integer version folders, staging, rollback, pruning, the champion), ``labels``
(``models.config`` version labels) and ``warmup`` (``assets.extra`` warm-up requests). Its
own package so that export, evaluation (the champion) and serving share it without
depending on each other.
"""
