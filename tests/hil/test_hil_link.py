"""Adapter timing and protocol rules (pure)."""

from __future__ import annotations

import pytest

from hil.link import LinkResult, adaptive_timeout, is_accepted, protocol_mismatch


def test_adaptive_timing_modes() -> None:
    assert adaptive_timeout(0, 0.2, 0.005) == 0.2  # AT0: always the full AT ST
    assert adaptive_timeout(1, 0.2, None) == 0.2  # nothing measured yet
    assert adaptive_timeout(1, 0.2, 0.005) == pytest.approx(0.030)  # floor
    assert adaptive_timeout(1, 0.2, 0.020) == pytest.approx(0.060)  # 3x the response time
    assert adaptive_timeout(2, 0.2, 0.020) == pytest.approx(0.040)  # 2x, more aggressive
    assert adaptive_timeout(1, 0.2, 0.5) == 0.2  # never beyond AT ST


@pytest.mark.parametrize(
    ("requested", "outcome"),
    [
        ("6", None),
        ("8", LinkResult(error="CAN ERROR")),
        ("9", LinkResult(error="CAN ERROR")),
        ("7", LinkResult()),
        ("3", LinkResult(error="BUS INIT: ...ERROR")),
        ("1", LinkResult()),
    ],
)
def test_speaking_the_wrong_protocol_on_a_can_11_500_bus(requested: str, outcome: LinkResult | None) -> None:
    assert protocol_mismatch(requested, "6") == outcome


def test_receive_filter() -> None:
    assert is_accepted(0x7E8, None) and is_accepted(0x7EF, None)
    assert not is_accepted(0x7DF, None) and not is_accepted(0x7E0, None)
    assert is_accepted(0x7E9, 0x7E9) and not is_accepted(0x7E8, 0x7E9)
