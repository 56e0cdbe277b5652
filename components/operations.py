"""Operations steps: the daily forecast run and the canary's automatic promotion (issue 22).

Unlike the training steps these act on persistent, shared state (the tensor store, the
forecast archive under artifacts/operations/, the served model repository), so they take no
KFP artifacts: ``workdir`` is the project tree on a mounted volume (params.yaml, data/,
artifacts/, models/) and ``params`` a params file relative to it, exactly what
``soilcast daily`` / ``soilcast promote --auto`` run in on a host.
"""

# No `from __future__ import annotations`: KFP reads the annotations as real types.


def daily(workdir: str, params: str, server: str, delivery: str, weather: str = "", tls_ca: str = "") -> str:
    """Ingest ``delivery`` (empty: nothing new), verify the archived forecasts, forecast the
    latest day with each ``operations.labels`` version through the gateway at ``server``
    (host:port), archive and write the products. Returns the report (JSON); a non-zero exit
    code fails the step, naming the code and the steps that failed. ``tls_ca``: the PEM root
    certificate the gateway's TLS certificate is checked with (relative to ``workdir``; empty:
    plaintext), as ``soilcast daily --tls-ca``."""
    from pathlib import Path

    from soilcast.operations.daily import run_daily
    from soilcast.pipeline import runtime
    from soilcast.serving.client import read_certificate

    cfg, layout = runtime.workdir_config(workdir, params)
    report = run_daily(cfg, layout, server, Path(delivery) if delivery else None,
                       weather=Path(weather) if weather else None,
                       root_certificates=read_certificate(Path(tls_ca) if tls_ca else None), emit=print)  # a logfmt line per step
    return runtime.daily_outcome(report)


def promote_auto(workdir: str, params: str) -> str:
    """Promote the canary to stable when its realised skill earns it; otherwise say why not.
    Returns the decision (JSON), also appended to the promotion log under artifacts/operations/."""
    from soilcast.operations.champion import promote_auto as decide
    from soilcast.pipeline import runtime

    cfg, layout = runtime.workdir_config(workdir, params)
    return runtime.report_json(decide(cfg, layout))
