"""Forecast serving: a TF-Serving-compatible gRPC gateway, its client and drift monitoring.

Modules: ``tensors`` (TensorProto <-> numpy without the TF runtime), ``models`` (loading and
hot-reloading SavedModel versions), ``validation`` (what a Predict input must look like),
``drift`` (PSI / mean shift against the exported training reference), ``telemetry``
(Prometheus metrics), ``gateway`` (the gRPC server), ``client`` and ``forecast`` (the
caller's side). The stand-in SavedModel for tests and benchmarks is ``soilcast.testing.standin``.
"""
