"""The adapter's CAN controller on python-can: send a request, gather answers, send flow control."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import can
import structlog

from hil.link import (
    CAN_ERROR,
    CanFrame,
    LinkRequest,
    LinkResult,
    adaptive_timeout,
    is_accepted,
    protocol_mismatch,
)

log = structlog.get_logger(__name__)

FLOW_CONTROL = bytes([0x30, 0x00, 0x00]).ljust(8, b"\x00")  # continue to send, no block limit, no gap
RESPONSE_PENDING_WAIT = 5.0  # ISO 15765-4 P2*max after 7F xx 78
_LEARNING_RATE = 0.3


class CanLink:
    """Implements `Link` on one python-can bus; one exchange at a time (thread-safe).

    `bus_state` returns an error text such as "CAN ERROR" when nothing can get through
    (no node acknowledges, bus-off) or None when the bus is usable.
    """

    def __init__(self, bus: can.BusABC, bus_protocol: str, bus_state: Callable[[], str | None] | None = None):
        self.bus = bus
        self.bus_protocol = bus_protocol
        self._bus_state = bus_state or (lambda: None)
        self._lock = threading.Lock()
        self._latency: float | None = None

    def exchange(self, request: LinkRequest) -> LinkResult:
        mismatch = protocol_mismatch(request.protocol, self.bus_protocol)
        if mismatch is not None:
            return mismatch
        with self._lock:
            error = self._bus_state()
            if error is not None:
                time.sleep(min(request.timeout, 0.05))  # the controller retries before it gives up
                return LinkResult(error=error)
            self._drain()
            try:
                self._send(request.header, request.data)
            except can.CanError as err:
                log.warning("link.send_failed", error=str(err))
                return LinkResult(error=CAN_ERROR)
            if not request.wait_for_responses:
                return LinkResult()
            return LinkResult(tuple(self._collect(request)))

    def _drain(self) -> None:
        """Forget frames that arrived while nobody was asking (late answers)."""
        while self.bus.recv(0) is not None:
            pass

    def _send(self, arbitration_id: int, data: bytes) -> None:
        self.bus.send(can.Message(arbitration_id=arbitration_id, data=data, is_extended_id=False))

    def _learn(self, latency: float) -> None:
        previous = self._latency
        self._latency = latency if previous is None else previous + _LEARNING_RATE * (latency - previous)

    def _collect(self, request: LinkRequest) -> list[CanFrame]:
        start = time.monotonic()
        deadline = start + adaptive_timeout(request.adaptive, request.timeout, self._latency)
        frames: list[CanFrame] = []
        remaining: dict[int, int] = {}  # bytes still expected per sender of a multi-frame answer
        complete = 0
        while (left := deadline - time.monotonic()) > 0:
            msg = self.bus.recv(left)
            if msg is None:
                break
            if (
                msg.is_error_frame
                or msg.is_remote_frame
                or not is_accepted(msg.arbitration_id, request.receive_filter)
            ):
                continue
            now = time.monotonic()
            if not frames:
                self._learn(now - start)
            data = bytes(msg.data)
            frames.append(CanFrame(msg.arbitration_id, data))
            complete += self._account(msg.arbitration_id, data, remaining)
            if request.max_responses and complete >= request.max_responses and not remaining:
                break
            if _is_response_pending(data):
                deadline = now + RESPONSE_PENDING_WAIT
            elif remaining:
                deadline = now + request.timeout
            else:
                deadline = now + adaptive_timeout(request.adaptive, request.timeout, self._latency)
        return frames

    def _account(self, sender: int, data: bytes, remaining: dict[int, int]) -> int:
        """Track ISO-TP progress; send flow control after a first frame. Returns answers completed."""
        if not data:
            return 0
        kind = data[0] >> 4
        if kind == 0x0:
            return 0 if _is_response_pending(data) else 1
        if kind == 0x1 and len(data) >= 2:
            remaining[sender] = (((data[0] & 0x0F) << 8) | data[1]) - (len(data) - 2)
            self._send(sender - 8, FLOW_CONTROL)
            return 0
        if kind == 0x2 and sender in remaining:
            remaining[sender] -= len(data) - 1
            if remaining[sender] <= 0:
                del remaining[sender]
                return 1
        return 0


def _is_response_pending(data: bytes) -> bool:
    return len(data) >= 4 and data[0] >> 4 == 0 and data[1] == 0x7F and data[3] == 0x78
