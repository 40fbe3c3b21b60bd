"""Clocks: putting another process's stamps on this one's clock.

Clocks. perf_counter_ns is per machine (CLOCK_MONOTONIC on Linux, shared by
the processes of one host): records from workers on one host merge as they
are; a worker on another host must shift its stamps onto the master's clock
(:meth:`RequestRecord.shifted`, by an offset measured at start-up) before its
records are windowed or merged, compact collectors included.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def clock_offset_ns(local: Mapping[str, Any], remote: Mapping[str, Any]) -> int:
    """What to add to a remote process's ``perf_counter_ns`` stamps to put them on
    this process's clock.

    Each side is a clock sample: ``{"boot_id", "host", "perf_ns", "wall_ns"}``,
    its monotonic and wall clocks read together. Processes of one running
    kernel share CLOCK_MONOTONIC (same ``boot_id``; same ``host`` when no boot
    id is known): 0. Otherwise the monotonic clocks are unrelated and the wall
    clocks bridge them, ``(local perf - local wall) - (remote perf - remote
    wall)``, as exact as the machines' wall clocks agree (NTP: about a
    millisecond). Durations (TTFT, ITL, E2E) never need this: they are
    differences of one process's stamps. Time windows and time series do.
    """
    same = (local.get("boot_id") == remote.get("boot_id") if local.get("boot_id") and remote.get("boot_id")
            else local.get("host") == remote.get("host"))
    if same:
        return 0
    return int((local["perf_ns"] - local["wall_ns"]) - (remote["perf_ns"] - remote["wall_ns"]))
