"""Model definitions (one small module per family) and the registries that list them:
networks (:mod:`.registry`) and reference forecasters (:mod:`.references`)."""

from __future__ import annotations

import importlib
import pkgutil

_discovered = False


def discover() -> None:
    """Import every module of this package once, so their registrations run.

    Why: a network or reference is registered where it is defined (``@register(...)``), and
    no hand-kept list of modules may go stale; the registries call this before answering.
    """
    global _discovered
    if _discovered:
        return
    _discovered = True
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")
