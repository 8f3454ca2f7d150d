"""The machine: how busy other processes keep it, so that a disturbed trial shows.

The bench shares its cores with whatever else runs (on a developer's machine: test suites).
Before a trial it waits, a bounded time, for the others to go quiet; during a trial it
measures the CPU time the whole machine spent (/proc/stat) less what the bench, its
workers and its sink spent: what is left is the others' share.
"""

from __future__ import annotations

import os
import platform
import resource
import time

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """CPU seconds all cores have spent busy since boot (user, nice, system, irq, steal)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def own_seconds() -> float:
    """CPU seconds of this process and of its children that have been waited for."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


class CpuWatch:
    """The others' CPU over an interval: whole machine less the bench's own processes."""

    def __init__(self) -> None:
        self.busy = busy_seconds()
        self.own = own_seconds()
        self.start = time.monotonic()

    def others_cores(self, sink_cpu_s: float = 0.0) -> float:
        """Average number of cores the other processes kept busy since this watch began."""
        wall = max(time.monotonic() - self.start, 1e-6)
        others = (busy_seconds() - self.busy) - (own_seconds() - self.own) - sink_cpu_s
        return max(others, 0.0) / wall


def wait_for_quiet(limit_cores: float, max_wait_s: float, probe_s: float = 0.5) -> float:
    """Wait until the others use under `limit_cores` over a probe, or `max_wait_s` passed.
    Returns the seconds waited (the sink must be idle meanwhile: it counts as others)."""
    start = time.monotonic()
    while True:
        watch = CpuWatch()
        time.sleep(probe_s)
        if watch.others_cores() < limit_cores or time.monotonic() - start >= max_wait_s:
            return time.monotonic() - start


def cpu_model() -> str:
    """The processor's name, from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
