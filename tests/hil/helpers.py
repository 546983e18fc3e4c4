"""Helpers shared by the HIL tests: a raw ELM327 terminal client and fixture types."""

from __future__ import annotations

from collections.abc import Callable

import serial

from hil import SimulatedCar

CarFactory = Callable[..., SimulatedCar]


class ElmClient:
    """Talks to the adapter like a terminal program: write a line, read up to the prompt."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.port = serial.serial_for_url(url, baudrate=38400, timeout=timeout)

    def raw(self, line: str) -> bytes:
        self.port.reset_input_buffer()
        self.port.write(line.encode("ascii") + b"\r")
        out = bytearray()
        while not out.endswith(b">"):
            chunk = self.port.read(1)
            if not chunk:
                raise TimeoutError(f"no prompt after {line!r}; got {bytes(out)!r}")
            out += chunk
        return bytes(out)

    def lines(self, line: str) -> list[str]:
        """The response lines, without echo, blank lines and prompt (send ATE0 first)."""
        text = self.raw(line).decode("ascii", "replace")
        return [part.strip() for part in text[:-1].split("\r") if part.strip()]

    def close(self) -> None:
        self.port.close()
