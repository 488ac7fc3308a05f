"""How busy the machine was while something was timed: the plan's calibration records it beside its unit costs,
because a unit cost measured while other jobs share the cores is inflated, and nothing else would say so.

`LoadMeter` measures over its `with` block, from `/proc/stat` and this process's own CPU time:

- `others`: the share of all cores that other processes kept busy (all cores' busy time, less this process's
  own CPU time, over wall time × cores): the direct measure, immediate where the load average lags a minute;
- `steal`: the share of CPU time the hypervisor gave to other virtual machines (`steal` in `/proc/stat`);
- `loadavg`: the 1-minute load average at the end, for the record.

Where `/proc/stat` is missing (not Linux), `others` and `steal` are None and only the load average is kept.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

BUSY_OTHERS = 0.25  # other processes kept more than a quarter of the cores busy
BUSY_STEAL = 0.05  # or the hypervisor took more than 5% of the CPU time


def _proc_stat() -> tuple[float, float, float] | None:
    """(busy, total, steal) jiffies summed over all cores, or None without `/proc/stat`."""
    try:
        fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0.0] * 8)[:8]
    busy = user + nice + system + irq + softirq  # guest time is already inside user
    return busy, busy + idle + iowait + steal, steal


class LoadMeter:
    """`with LoadMeter() as m: ...` then `m.conditions`: `{others, steal, loadavg, cores, seconds}`."""

    def __enter__(self) -> LoadMeter:
        self._stat, self._own, self._t0 = _proc_stat(), _own_cpu(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        seconds = time.perf_counter() - self._t0
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        end = _proc_stat()
        others = steal = None
        if self._stat is not None and end is not None:
            hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
            busy, total, stolen = (b - a for a, b in zip(self._stat, end, strict=True))
            own = (_own_cpu() - self._own) * hz
            others = max(0.0, (busy - own) / total) if total > 0 else 0.0
            steal = stolen / total if total > 0 else 0.0
        self.conditions: dict[str, Any] = {
            "others": None if others is None else round(others, 3), "steal": None if steal is None else round(steal, 3),
            "loadavg": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None, "cores": cores,
            "seconds": round(seconds, 1)}


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def worst(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """The busier of two recorded conditions (a cache holds unit costs from several sessions: the worst counts)."""
    if not a or not b:
        return a or b
    return max(a, b, key=lambda c: (c.get("others") or 0.0) + (c.get("steal") or 0.0))


def busy_line(conditions: dict[str, Any] | None) -> str | None:
    """One line for the plan when its unit costs were measured on busy cores; None when they were quiet."""
    if not conditions:
        return None
    others, steal = conditions.get("others") or 0.0, conditions.get("steal") or 0.0
    if others <= BUSY_OTHERS and steal <= BUSY_STEAL:
        return None
    return (f"BUSY CORES: the unit costs were measured while other jobs kept {others:.0%} of the {conditions['cores']} "
            f"core(s) busy (load average {conditions.get('loadavg')}, {steal:.0%} stolen by the hypervisor), so this "
            f"plan overestimates; on a quiet machine, `spdf plan --recalibrate` measures them again")
