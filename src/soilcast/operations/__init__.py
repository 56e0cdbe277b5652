"""The daily operation: every issued forecast archived, verified as its valid day is observed,
realised skill exported to Prometheus, and the canary promoted on it (issue 22)."""
