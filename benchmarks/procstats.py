"""CPU time and resident memory of processes, read from /proc (Linux; no psutil).

The load and soak benchmarks use it to show where the machine's cores went during a phase
(gunicorn workers, worker processes, the load generator itself) and whether memory stays flat.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (index 0 is the state)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds the process has used so far (its threads included)."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_mib(pid: int) -> float | None:
    """Resident memory in MiB (/proc/<pid>/statm's second field)."""
    try:
        with open(f"/proc/{pid}/statm") as handle:
            pages = int(handle.read().split()[1])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return None
    return pages * _PAGE_KIB / 1024


def parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def alive(pid: int) -> bool:
    """A running process (a zombie, waiting to be reaped, is not)."""
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] not in ("Z", "X")


def live_processes() -> Iterator[tuple[int, list[str]]]:
    """(pid, stat fields) of every live process: fields[1] is the parent, fields[2] the group."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields and fields[0] not in ("Z", "X"):
                yield int(entry), fields


def children(parent: int) -> list[int]:
    """Live processes whose parent is ``parent``."""
    return sorted(pid for pid, fields in live_processes() if int(fields[1]) == parent)


def _machine_ticks() -> tuple[float, float]:
    """(all, idle) CPU ticks of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as handle:
        values = [float(v) for v in handle.readline().split()[1:]]
    return sum(values), values[3] + (values[4] if len(values) > 4 else 0.0)


class CpuMeter:
    """CPU used by named groups of processes between ``start()`` and ``stop()``, as a
    percentage of one core (200 % = both cores of a 2-core machine), and ``machine`` for every
    process on the machine (other people's too: on a shared machine that says how noisy the
    figures are)."""

    def __init__(self, groups: dict[str, Iterable[int]]):
        self.groups = {name: list(pids) for name, pids in groups.items()}
        self._before: dict[int, float] = {}
        self._started = 0.0
        self._machine = (0.0, 0.0)

    def start(self) -> CpuMeter:
        self._started = time.monotonic()
        self._machine = _machine_ticks()
        self._before = {pid: cpu_seconds(pid) or 0.0
                        for pids in self.groups.values() for pid in pids}
        return self

    def stop(self) -> dict[str, float]:
        wall = max(1e-9, time.monotonic() - self._started)
        out = {}
        for name, pids in self.groups.items():
            used = 0.0
            for pid in pids:
                now = cpu_seconds(pid)
                if now is not None:   # a process gone since start: its time is lost
                    used += max(0.0, now - self._before.get(pid, 0.0))
            out[name] = round(100.0 * used / wall, 1)
        total, idle = _machine_ticks()
        d_total, d_idle = total - self._machine[0], idle - self._machine[1]
        busy = (d_total - d_idle) / d_total if d_total > 0 else 0.0
        out["machine"] = round(100.0 * (os.cpu_count() or 1) * busy, 1)
        return out
