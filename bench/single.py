"""The single-agent benchmarks, ours and Salt's interleaved sample by sample.

Both masters stay up for the whole phase and every measurement alternates between the
sides (A B, then B A), so load from other work on a shared machine falls on both alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

from bench.proc import BenchError
from bench.stats import Series

METRICS = ("agent_start", "agent_rss", "agent_pss", "master_pss", "cli", "api", "call")
Figures = dict[str, Series]


class Side(Protocol):
    """One product (ours or Salt) with a master and one agent, measured one sample a call."""

    name: str

    def open(self) -> None: ...

    def close(self) -> None: ...

    def start_agent(self) -> float: ...

    def agent_rss(self) -> float: ...

    def agent_pss(self) -> float: ...

    def master_pss(self) -> float: ...

    def cli(self) -> float: ...

    def api(self) -> float: ...

    def call(self) -> float: ...


class Sampler:
    """Collects samples per side and metric; a side that fails is dropped, with a reason."""

    def __init__(self, sides: Sequence[Side], log: Callable[[str], None]) -> None:
        self.live = list(sides)
        self.values: dict[str, dict[str, list[float]]] = {
            side.name: {metric: [] for metric in METRICS} for side in sides}
        self.failures: list[str] = []
        self.log = log

    def each(self, index: int) -> list[Side]:
        """The live sides, in alternating order."""
        return list(self.live) if index % 2 == 0 else list(reversed(self.live))

    def take(self, side: Side, metric: str, read: Callable[[], float], keep: bool = True) -> bool:
        try:
            value = read()
        except (BenchError, OSError, TimeoutError, ValueError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            self.failures.append(f"{side.name} {metric}: {first}")
            self.log(f"FAILED {side.name} {metric}: {err}")
            self.live.remove(side)
            return False
        if keep:
            self.values[side.name][metric].append(value)
        return True

    def figures(self) -> dict[str, Figures]:
        return {name: {metric: Series(tuple(values)) for metric, values in metrics.items()}
                for name, metrics in self.values.items()}

    def report(self, metric: str, scale: float, unit: str) -> None:
        parts = [f"{name} {Series(tuple(v[metric])).median * scale:.1f} {unit}"
                 for name, v in self.values.items() if v[metric]]
        self.log(f"{metric}: median " + ", ".join(parts))


def measure(sides: Sequence[Side], samples: int, settle: float,
            log: Callable[[str], None]) -> tuple[dict[str, Figures], list[str]]:
    """Every single-agent benchmark for every side; returns figures and failures."""
    sampler = Sampler(sides, log)
    try:
        for side in sides:
            sampler.take(side, "start-up", _opener(side), keep=False)
        _starts(sampler, samples, settle)
        for index in range(samples):
            for side in sampler.each(index):
                sampler.take(side, "master_pss", side.master_pss)
            time.sleep(0.1)
        sampler.report("master_pss", 1, "MiB")
        for metric, count in (("cli", samples), ("api", samples * 2), ("call", samples)):
            _round_trips(sampler, metric, count)
    finally:
        for side in reversed(sides):
            side.close()
    return sampler.figures(), sampler.failures


def _opener(side: Side) -> Callable[[], float]:
    def open_side() -> float:
        side.open()
        return 0.0

    return open_side


def _starts(sampler: Sampler, samples: int, settle: float) -> None:
    """Start each agent 1 + ``samples`` times; the first start (which caches the master's
    key) is not counted. The last agents stay up for the round trips."""
    for index in range(samples + 1):
        for side in sampler.each(index):
            def start(s: Side = side) -> float:
                elapsed = s.start_agent()
                time.sleep(settle)  # idle before the memory reading
                return elapsed

            if sampler.take(side, "agent_start", start, keep=index > 0):
                sampler.take(side, "agent_rss", side.agent_rss, keep=index > 0)
                sampler.take(side, "agent_pss", side.agent_pss, keep=index > 0)
    sampler.report("agent_start", 1000, "ms")
    sampler.report("agent_rss", 1, "MiB")
    sampler.report("agent_pss", 1, "MiB")


def _round_trips(sampler: Sampler, metric: str, count: int) -> None:
    for side in sampler.each(0):
        sampler.take(side, metric, getattr(side, metric), keep=False)  # warm-up
    for index in range(count):
        for side in sampler.each(index):
            sampler.take(side, metric, getattr(side, metric))
    sampler.report(metric, 1000, "ms")
