"""One simulated ECU on a python-can bus: ISO-TP (can-isotp) in, SAE J1979 answers out, faults applied."""

from __future__ import annotations

import threading
from typing import Any

import can
import isotp
import structlog

from hil import j1979
from hil.canbus import BusConfig, open_bus
from hil.faults import Fault, FaultKind, FaultSet
from hil.model import VehicleModel
from hil.vehicle import FUNCTIONAL_REQUEST_ID, EcuProfile

log = structlog.get_logger(__name__)

PADDING = 0xAA
_POLL = 0.01  # seconds: each ISO-TP stack is waited on in turn; thread wake-up granularity
_ISOTP_PARAMS: dict[str, Any] = {
    "tx_padding": PADDING,
    "stmin": 0,
    "blocksize": 0,
    "rx_flowcontrol_timeout": 1000,
    "rx_consecutive_frame_timeout": 1000,
}


class EcuNode:
    """An ECU: its own bus connection, a physical and a functional ISO-TP receiver, one worker thread.

    Answers to functional requests (0x7DF) go out on the physical stack, so the tester's
    flow control (sent to the ECU's physical id) reaches the stack that is sending.
    """

    def __init__(
        self, profile: EcuProfile, bus_config: BusConfig, model: VehicleModel, faults: FaultSet
    ) -> None:
        self.profile = profile
        self._bus_config = bus_config
        self._model = model
        self._faults = faults
        self._stop = threading.Event()
        self._bus: can.BusABC | None = None
        self._notifier: can.Notifier | None = None
        self._stacks: list[tuple[isotp.NotifierBasedCanStack, bool]] = []
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._bus = open_bus(self._bus_config)
        self._notifier = can.Notifier(self._bus, [], timeout=_POLL)
        physical = self._stack(self.profile.request_id)
        functional = self._stack(FUNCTIONAL_REQUEST_ID)
        self._stacks = [(physical, False), (functional, True)]
        for stack, _ in self._stacks:
            stack.start()
        self._thread = threading.Thread(target=self._run, name=f"hil-ecu-{self.profile.name}", daemon=True)
        self._thread.start()
        log.info("ecu.started", ecu=self.profile.name, request_id=hex(self.profile.request_id))

    def _stack(self, rxid: int) -> isotp.NotifierBasedCanStack:
        assert self._bus is not None and self._notifier is not None
        address = isotp.Address(isotp.AddressingMode.Normal_11bits, rxid=rxid, txid=self.profile.response_id)
        return isotp.NotifierBasedCanStack(
            self._bus,
            self._notifier,
            address=address,
            params=dict(_ISOTP_PARAMS),
            error_handler=self._on_error,
        )

    def signal_stop(self) -> None:
        """Ask the worker to finish without waiting (so a car can stop its ECUs together)."""
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for stack, _ in self._stacks:
            stack.stop()
        self._stacks = []
        if self._notifier is not None:
            self._notifier.stop(timeout=2)
            self._notifier = None
        if self._bus is not None:
            self._bus.shutdown()
            self._bus = None

    def _on_error(self, error: Exception) -> None:
        log.warning("ecu.isotp_error", ecu=self.profile.name, error=str(error))

    def _run(self) -> None:
        while not self._stop.is_set():
            for stack, functional in self._stacks:
                payload = stack.recv(block=True, timeout=_POLL)
                if payload:
                    try:
                        self._handle(bytes(payload), functional)
                    except Exception:  # one bad request must not kill the ECU
                        log.exception(
                            "ecu.request_failed", ecu=self.profile.name, request=bytes(payload).hex()
                        )

    def _fault(self, kind: FaultKind, service: int) -> Fault | None:
        return self._faults.for_ecu(kind, self.profile.name, service)

    def _handle(self, request: bytes, functional: bool) -> None:
        service = request[0]
        if (
            not self._model.powered()
            or self._faults.get(FaultKind.BUS_OFF)
            or self._fault(FaultKind.SILENT_ECU, service)
        ):
            return
        slow = self._fault(FaultKind.SLOW_ECU, service)
        if self._stop.wait(self.profile.response_delay + (slow.delay if slow else 0.0)):
            return
        negative = self._fault(FaultKind.NEGATIVE_RESPONSE, service)
        if negative is not None and negative.nrc != j1979.NRC_RESPONSE_PENDING:
            self._send(j1979.negative(service, negative.nrc))
            return
        response = self._model.serve(self.profile.name, request, functional=functional)
        if response is None:
            return
        if negative is not None:
            self._send(j1979.negative(service, j1979.NRC_RESPONSE_PENDING))
            if self._stop.wait(negative.delay):
                return
        if self._fault(FaultKind.TRUNCATED_FRAME, service):
            self._send_truncated(response)
            return
        self._send(response)

    def _send(self, payload: bytes) -> None:
        self._stacks[0][0].send(payload)

    def _send_truncated(self, payload: bytes) -> None:
        """A first frame or single frame that announces the full length but carries only the header."""
        head = payload[:2]
        if len(payload) <= 7:
            data = bytes([len(payload)]) + head
        else:
            data = bytes([0x10 | (len(payload) >> 8), len(payload) & 0xFF]) + head
        assert self._bus is not None
        self._bus.send(can.Message(arbitration_id=self.profile.response_id, data=data, is_extended_id=False))
