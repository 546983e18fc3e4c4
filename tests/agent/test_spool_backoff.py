"""The sender's backoff: exponential, capped, jittered within [d/2, d], reset on success."""

from __future__ import annotations

import random

import pytest

from autopi_agent.spool import Backoff


def test_grows_exponentially_within_half_to_full_step_and_caps() -> None:
    backoff = Backoff(base=1.0, cap=30.0, factor=2.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(10)]
    for n, delay in enumerate(delays):
        nominal = min(30.0, 2.0 ** n)
        assert nominal / 2 <= delay <= nominal
    assert max(delays) <= 30.0 and delays[-1] >= 15.0
    assert backoff.attempts == 10


def test_reset_starts_again_from_base() -> None:
    backoff = Backoff(base=0.5, cap=10.0, rng=random.Random(2))
    for _ in range(6):
        backoff.next_delay()
    backoff.reset()
    assert 0.25 <= backoff.next_delay() <= 0.5


def test_jitter_spreads_agents_apart() -> None:
    firsts = {round(Backoff(base=8.0, rng=random.Random(seed)).next_delay(), 6) for seed in range(50)}
    assert len(firsts) == 50
    assert min(firsts) >= 4.0 and max(firsts) <= 8.0


def test_many_failures_do_not_overflow() -> None:
    backoff = Backoff(base=1.0, cap=60.0, rng=random.Random(3))
    for _ in range(5000):
        delay = backoff.next_delay()
    assert 30.0 <= delay <= 60.0


@pytest.mark.parametrize("kwargs", [{"base": 0}, {"base": 5, "cap": 1}, {"factor": 0.5}])
def test_bad_parameters_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="backoff needs"):
        Backoff(**kwargs)  # type: ignore[arg-type]
