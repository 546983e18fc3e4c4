"""A simulated power MCU: answers the agent's requests, cuts and restores the Pi's power.

It reads battery voltage and ignition from the car's PowerSim (so scenarios and the
``power`` control command drive it), keeps time on the car's clock, records every sleep
and hibernate request with its wake triggers, models the watchdog (no heartbeat for the
armed timeout: the Pi is power-cycled) and wakes the Pi on ignition, a voltage rise or
its timer. State is evaluated lazily from the clock, so a ManualClock steps it exactly.
The protocol is documented in hil/README.md ("Power MCU").
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass

import structlog

from hil.clock import Clock
from hil.mcu_codec import Lines, McuFrame, parse, render
from hil.power import PowerSim

log = structlog.get_logger(__name__)

PI_ON, PI_SHUTTING_DOWN, PI_ASLEEP = "on", "shutting_down", "asleep"
TRIGGERS = ("ignition", "voltage_rise", "timer")
_KEEP_REQUESTS = 50


class _BadRequest(Exception):
    """A request whose fields do not parse (answered with ERR code=bad_argument)."""


@dataclass(frozen=True, slots=True)
class McuRequest:
    """A sleep or hibernate request as the MCU received it (time on the car's clock)."""

    time: float
    kind: str
    delay: float
    wake: tuple[str, ...]
    timer: float = 0.0
    voltage_rise: float = 0.0


def _number(frame: McuFrame, key: str, default: str | None = None) -> float:
    raw = frame.field(key, default)
    try:
        value = float(raw) if raw is not None else -1.0
    except ValueError:
        value = -1.0
    if value < 0:
        raise _BadRequest(key)
    return value


class PowerMcuSim:
    """The MCU's state machine; thread-safe (a port thread and the control thread use it)."""

    def __init__(self, power: PowerSim, clock: Clock) -> None:
        self.power = power
        self.clock = clock
        self._lock = threading.RLock()
        self._started = clock.now()
        self.pi = PI_ON
        self.wake_reason = "power_on"
        self.boots = 1
        self.watchdog_timeout = 0.0
        self.watchdog_resets = 0
        self.heartbeats = 0
        self.noise_lines = 0
        self.requests: list[McuRequest] = []
        self._last_heartbeat = self._started
        self._cut_at = 0.0
        self._voltage_at_cut: float | None = None
        self._ignition_seen_off = False
        self._output: list[bytes] = []

    # ------------------------------------------------------------ requests

    def handle(self, line: bytes) -> bytes | None:
        """The reply to one request line; None for noise, or while the Pi is unpowered."""
        with self._lock:
            self.tick()
            if self.pi == PI_ASLEEP:
                return None
            frame = parse(line)
            if frame is None:
                if line.strip():
                    self.noise_lines += 1
                return None
            handler = self._handlers().get(frame.verb)
            if handler is None:
                return render(McuFrame(frame.seq, "ERR", (("code", "unknown_verb"),)))
            try:
                fields = handler(frame)
            except _BadRequest as err:
                return render(McuFrame(frame.seq, "ERR", (("code", "bad_argument"),
                                                          ("field", str(err)))))
            return render(McuFrame(frame.seq, "OK", fields))

    def _handlers(self) -> dict[str, Callable[[McuFrame], tuple[tuple[str, str], ...]]]:
        return {"STATUS": self._status, "HB": self._heartbeat, "SLEEP": self._sleep,
                "HIBERNATE": self._hibernate}

    def _status(self, frame: McuFrame) -> tuple[tuple[str, str], ...]:
        state = self.power.state()
        return (("v", f"{state.battery_voltage:.2f}"), ("ign", "1" if state.ignition else "0"),
                ("up", str(int(self.clock.now() - self._started))), ("wake", self.wake_reason),
                ("wd", str(round(self.watchdog_timeout))))

    def _heartbeat(self, frame: McuFrame) -> tuple[tuple[str, str], ...]:
        timeout = _number(frame, "t")
        self.heartbeats += 1
        if self.pi == PI_ON:
            self.watchdog_timeout = timeout
            self._last_heartbeat = self.clock.now()
        return (("t", str(round(self.watchdog_timeout))),)

    def _sleep(self, frame: McuFrame) -> tuple[tuple[str, str], ...]:
        wake = tuple(filter(None, (frame.field("wake") or "").split(",")))
        if not wake or not set(wake) <= set(TRIGGERS):
            raise _BadRequest("wake")
        timer = _number(frame, "timer") if "timer" in wake else 0.0
        rise = _number(frame, "rise") if "voltage_rise" in wake else 0.0
        if ("timer" in wake and timer <= 0) or ("voltage_rise" in wake and rise <= 0):
            raise _BadRequest("timer" if timer <= 0 and "timer" in wake else "rise")
        self._accept(McuRequest(self.clock.now(), "sleep", _number(frame, "delay", "0"),
                                wake, timer, rise))
        return frame.fields

    def _hibernate(self, frame: McuFrame) -> tuple[tuple[str, str], ...]:
        self._accept(McuRequest(self.clock.now(), "hibernate", _number(frame, "delay", "0"),
                                ("ignition",)))
        return frame.fields

    def _accept(self, request: McuRequest) -> None:
        self.requests = [*self.requests, request][-_KEEP_REQUESTS:]
        self.pi = PI_SHUTTING_DOWN
        self.watchdog_timeout = 0.0  # the Pi is about to halt: no more heartbeats come
        self._cut_at = request.time + request.delay
        self._ignition_seen_off = not self.power.ignition
        log.info("mcu.request", **{k: v for k, v in asdict(request).items() if k != "time"})

    # ------------------------------------------------------------ time passing

    def tick(self) -> None:
        """Bring the state up to the clock: watchdog, power cut, wake triggers."""
        with self._lock:
            now = self.clock.now()
            state = self.power.state()
            if not state.ignition:
                self._ignition_seen_off = True
            if self.pi == PI_ON and self.watchdog_timeout > 0 and \
                    now >= self._last_heartbeat + self.watchdog_timeout:
                self.watchdog_resets += 1
                self._power_up("watchdog")
            elif self.pi == PI_SHUTTING_DOWN and now >= self._cut_at:
                self.pi, self._voltage_at_cut = PI_ASLEEP, state.battery_voltage
                log.info("mcu.power_cut", voltage=state.battery_voltage)
            if self.pi == PI_ASLEEP:
                reason = self._wake_trigger(now, state.battery_voltage, state.ignition)
                if reason is not None:
                    self._power_up(reason)

    def _wake_trigger(self, now: float, voltage: float, ignition: bool) -> str | None:
        request = self.requests[-1]
        if "ignition" in request.wake and ignition and self._ignition_seen_off:
            return "ignition"
        if "voltage_rise" in request.wake and self._voltage_at_cut is not None and \
                voltage >= self._voltage_at_cut + request.voltage_rise - 1e-9:
            return "voltage_rise"
        if "timer" in request.wake and now >= self._cut_at + request.timer:
            return "timer"
        return None

    def wake(self, reason: str = "ignition") -> None:
        """Power the Pi up now, as if ``reason`` had woken it (a control command)."""
        with self._lock:
            self._power_up(reason)

    def _power_up(self, reason: str) -> None:
        self.pi, self.wake_reason = PI_ON, reason
        self.boots += 1
        self.watchdog_timeout = 0.0  # armed again by the booted agent's first heartbeat
        self._last_heartbeat = self.clock.now()
        self._output.append(render(McuFrame(0, "BOOT", (("wake", reason),))))
        log.info("mcu.power_up", reason=reason, boots=self.boots)

    def take_output(self) -> bytes:
        """Lines the MCU sends unasked (BOOT), oldest first; emptied by the call."""
        with self._lock:
            out, self._output = b"".join(self._output), []
            return out

    def describe(self) -> dict[str, object]:
        """The MCU's state for the control socket and tests."""
        with self._lock:
            self.tick()
            last = self.requests[-1] if self.requests else None
            return {
                "pi": self.pi, "asleep": self.pi == PI_ASLEEP, "wake_reason": self.wake_reason,
                "boots": self.boots, "heartbeats": self.heartbeats, "noise_lines": self.noise_lines,
                "watchdog": {"timeout": self.watchdog_timeout, "resets": self.watchdog_resets},
                "last_request": asdict(last) if last else None,
                "wake_triggers": list(last.wake) if last else [],
                "requests": len(self.requests),
            }


class McuSession:
    """The MCU's end of a serial port: request lines in, replies and BOOT lines out."""

    def __init__(self, mcu: PowerMcuSim) -> None:
        self.mcu = mcu
        self._lines = Lines()

    def feed(self, data: bytes, write: Callable[[bytes], None]) -> None:
        for line in self._lines.feed(data):
            reply = self.mcu.handle(line)
            self.poll(write)
            if reply is not None:
                write(reply)

    def poll(self, write: Callable[[bytes], None]) -> None:
        self.mcu.tick()
        pending = self.mcu.take_output()
        if pending:
            write(pending)

    def power_cycle(self) -> None:
        self._lines = Lines()
