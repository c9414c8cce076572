"""What the benchmark scripts share: timing records, formatting and the machine's state.

Imported by the scripts in this folder (run as ``python benchmarks/<script>.py``, which
puts this folder on ``sys.path``).
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def import_tierpolicy() -> Any:
    try:
        import tierpolicy  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        if exc.name != "tierpolicy":
            raise
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
        import tierpolicy  # noqa: PLC0415
    return tierpolicy


@dataclasses.dataclass(frozen=True)
class Target:
    """One target of the issue, judged on the wall-clock median."""

    name: str
    measured: str
    met: bool
    met_on_cpu: bool

    @property
    def verdict(self) -> str:
        if self.met:
            return "met"
        if self.met_on_cpu:
            return "**not met** on wall-clock time (met on CPU time: the machine was busy)"
        return "**not met**"


@dataclasses.dataclass(frozen=True, slots=True)
class Stamp:
    """A wall-clock and a CPU-time reading; their difference is a pair of durations."""

    wall: int
    cpu: int

    def __sub__(self, earlier: Stamp) -> tuple[int, int]:
        return self.wall - earlier.wall, self.cpu - earlier.cpu


def stamp() -> Stamp:
    return Stamp(time.perf_counter_ns(), time.thread_time_ns())


def fmt_ns(ns: float) -> str:
    if ns >= 1_000_000:
        return f"{ns / 1_000_000:,.2f} ms"
    if ns >= 10_000:
        return f"{ns / 1_000:,.1f} µs"
    if ns >= 1_000:
        return f"{ns / 1_000:,.2f} µs"
    return f"{ns:,.0f} ns"


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


@dataclasses.dataclass
class Result:
    """Per-call times of one case, one entry per sample, in nanoseconds.

    ``per_call_ns`` is wall-clock time (``perf_counter_ns``), what the targets are judged
    on. ``cpu_per_call_ns`` is the thread's CPU time over the same batches
    (``thread_time_ns``): it leaves out the time the process waited for a CPU, so on a
    busy machine it shows how much of the wall time was other processes.
    """

    name: str
    batch: int
    per_call_ns: list[float]
    cpu_per_call_ns: list[float]
    floor: str | None = None
    """The key of the case whose median is subtracted for the overhead column."""

    @property
    def median(self) -> float:
        return statistics.median(self.per_call_ns)

    @property
    def p90(self) -> float:
        data = sorted(self.per_call_ns)
        if len(data) < 2:
            return data[0]
        return statistics.quantiles(data, n=10, method="inclusive")[-1]

    @property
    def minimum(self) -> float:
        return min(self.per_call_ns)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_per_call_ns)

    def to_json(self) -> dict[str, object]:
        return {
            "batch": self.batch,
            "samples": len(self.per_call_ns),
            "median_ns": self.median,
            "p90_ns": self.p90,
            "min_ns": self.minimum,
            "cpu_median_ns": self.cpu_median,
            "floor": self.floor,
            "per_call_ns": self.per_call_ns,
            "cpu_per_call_ns": self.cpu_per_call_ns,
        }


def cpu_ticks() -> tuple[int, int] | None:
    """The whole machine's busy and total CPU time so far, in clock ticks (Linux ``/proc/stat``).

    Two readings give how busy every CPU was in between, whoever used it; with the
    benchmark's own CPU time subtracted, how much CPU other processes took during a run.
    ``None`` where ``/proc/stat`` is not available.
    """
    try:
        fields = Path("/proc/stat").read_text(encoding="ascii").split("\n", 1)[0].split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    total = sum(values)
    return total - values[3] - values[4], total
