"""Keeping the cyclic garbage collector off a server's long-lived heap (CPython's `gc.freeze`).

A full collection walks every live object: with scikit-learn, NumPy and pandas imported and a
model loaded that took 50-100 ms on the event loop, several times a minute under load (0.5 % of
requests at 64 connections, bench/README.md). After a load the heap is collected once and, when
what lies outside the frozen heap is large, frozen, so later collections only walk objects made
since. A frozen model's cycles stay frozen after it is unloaded: its unload unfreezes first.
"""

from __future__ import annotations

import gc

__all__ = ["FREEZE_AT_OBJECTS", "freezes", "settle_heap"]

FREEZE_AT_OBJECTS = 20_000
"""Objects outside the frozen heap, after a collection, worth freezing: a full pass over fewer
costs under ~10 ms, and freezing them would make the unload of every model loaded so far walk the
whole heap (unfreeze, collect) to free that model's cycles."""


class _FreezeCount:
    """How many times `settle_heap` froze the heap in this process (the heap is per process)."""

    value = 0


def freezes() -> int:
    """How many times `settle_heap` froze the heap; a model loaded before the latest may be in it.

    A `gc.freeze()` made outside this module after a model loaded is not counted: that model's
    cycles then wait for the next unload or close that unfreezes.
    """
    return _FreezeCount.value


def settle_heap(*, unfreeze: bool) -> None:
    """Collect, then freeze what is left when it is large (`FREEZE_AT_OBJECTS`).

    `unfreeze` first returns the frozen heap to the collector: an unloaded model that was frozen
    with it (loaded before the latest freeze, `freezes()`) has its cycles there. A model loaded
    into an already frozen heap never was, so its unload collects only what lies outside it.
    """
    if unfreeze:
        gc.unfreeze()
    gc.collect()
    if len(gc.get_objects()) >= FREEZE_AT_OBJECTS:
        gc.freeze()
        _FreezeCount.value += 1
