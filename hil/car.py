"""A simulated car: ECUs on a CAN bus, an ELM327 adapter on a pty and a TCP port, power, faults."""

from __future__ import annotations

import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import structlog

from hil.canbus import BusConfig, open_bus
from hil.canlink import CanLink
from hil.clock import Clock, SystemClock
from hil.ecu import EcuNode
from hil.elm import AdapterIdentity, Elm327
from hil.errors import HilError
from hil.faults import Fault, FaultKind, FaultSet, parse_kind
from hil.link import CAN_ERROR
from hil.loader import load_scenario, load_vehicle
from hil.mcu import McuSession, PowerMcuSim
from hil.model import VehicleModel
from hil.power import PowerSim
from hil.scenario import Scenario
from hil.serialport import AdapterSession, PtyPort, TcpPort
from hil.vehicle import VehicleProfile

log = structlog.get_logger(__name__)

STN_IDENTITY = AdapterIdentity(version="ELM327 v1.4b", stn_version="STN1110 v4.3.0")


@dataclass(frozen=True, slots=True)
class CarConfig:
    """How to build a simulated car.

    `ecus`/`adapter` choose which halves run: ECUs only on a bench (a real dongle's chip
    talks to them over socketcan), or an adapter only (against ECUs in another process).
    `tcp_port` None disables the TCP port, 0 picks a free one. `baud` paces adapter output
    like a UART (0: as fast as possible). `link_dir` holds the stable pty symlinks.
    `mcu` runs the power MCU simulator, on a pty (`mcu_pty`, symlink `mcu`) and/or a
    TCP port (`mcu_tcp_port`: None none, 0 a free one).
    """

    vehicle: str | Path | VehicleProfile = "demo-sedan"
    scenario: str | Path | Scenario = "idle"
    bus: BusConfig = field(default_factory=BusConfig)
    ecus: bool = True
    adapter: bool = True
    pty: bool = True
    tcp_port: int | None = 0
    baud: int = 38400
    reset_delay: float = 0.5
    stn: bool = False
    link_dir: Path | None = None
    seed: int = 0
    mcu: bool = True
    mcu_pty: bool = True
    mcu_tcp_port: int | None = None


def _vehicle(spec: str | Path | VehicleProfile) -> VehicleProfile:
    return spec if isinstance(spec, VehicleProfile) else load_vehicle(spec)


def _scenario(spec: str | Path | Scenario) -> Scenario:
    return spec if isinstance(spec, Scenario) else load_scenario(spec)


class SimulatedCar:
    """Start with `start()` or `with SimulatedCar(...) as car:`; everything stops on `stop()`.

    Several cars can run in one process: each has its own bus channel, ports and state.
    """

    def __init__(self, config: CarConfig | None = None, *, clock: Clock | None = None) -> None:
        self.config = config or CarConfig()
        self.clock = clock or SystemClock()
        self.bus_config = self.config.bus.resolved()
        self.vehicle = _vehicle(self.config.vehicle)
        self.power = PowerSim(self.clock)
        self.model = VehicleModel(self.vehicle, _scenario(self.config.scenario), self.clock, self.power)
        self.faults = FaultSet()
        self.mcu = PowerMcuSim(self.power, self.clock)
        self._mcu_ports: list[PtyPort | TcpPort] = []
        self._stop = threading.Event()
        self._ecus: list[EcuNode] = []
        self._link: CanLink | None = None
        self._ports: list[PtyPort | TcpPort] = []
        self._extra_links: list[CanLink] = []
        self._own_link_dir: Path | None = None
        self._started = False

    # ------------------------------------------------------------ lifecycle

    def start(self) -> SimulatedCar:
        if self._started:
            raise HilError("this car is already running")
        self._started = True
        try:
            if self.config.ecus:
                for profile in self.vehicle.ecus:
                    node = EcuNode(profile, self.bus_config, self.model, self.faults)
                    self._ecus.append(node)
                    node.start()
            if self.config.adapter:
                self._start_adapter()
            if self.config.mcu:
                self._start_mcu()
        except BaseException:
            self.stop()
            raise
        log.info(
            "car.started",
            vehicle=self.vehicle.name,
            scenario=self.model.scenario.name,
            bus=self.bus_config.describe(),
        )
        return self

    def _bus_state(self) -> str | None:
        if self.faults.get(FaultKind.BUS_OFF) is not None:
            return CAN_ERROR
        if self.config.ecus and not self.power.ignition:
            return CAN_ERROR  # every ECU is asleep: nobody acknowledges the adapter's frames
        return None

    def open_adapter(self, identity: AdapterIdentity | None = None) -> Elm327:
        """A fresh ELM327 interpreter with its own connection to this car's bus, no serial port.

        For tests and tools that drive the adapter logic directly; closed by `stop()`.
        """
        link = CanLink(open_bus(self.bus_config), self.vehicle.protocol, self._bus_state)
        self._extra_links.append(link)
        return Elm327(link, self.power, identity or (STN_IDENTITY if self.config.stn else AdapterIdentity()))

    def _start_adapter(self) -> None:
        self._link = CanLink(open_bus(self.bus_config), self.vehicle.protocol, self._bus_state)
        identity = STN_IDENTITY if self.config.stn else AdapterIdentity()
        link, power = self._link, self.power

        def session() -> AdapterSession:
            return AdapterSession(
                lambda: Elm327(link, power, identity),
                self.faults,
                self._stop,
                baud=self.config.baud,
                reset_delay=self.config.reset_delay,
                seed=self.config.seed,
            )

        if self.config.pty:
            self._ports.append(PtyPort(session(), self._stop, self._link_dir() / "obd"))
        if self.config.tcp_port is not None:
            self._ports.append(TcpPort(session(), self._stop, self.config.tcp_port))
        for port in self._ports:
            port.start()

    def _link_dir(self) -> Path:
        if self.config.link_dir is not None:
            return self.config.link_dir
        if self._own_link_dir is None:
            self._own_link_dir = Path(tempfile.mkdtemp(prefix="hil-"))
        return self._own_link_dir

    def _start_mcu(self) -> None:
        if self.config.mcu_pty:
            self._mcu_ports.append(PtyPort(McuSession(self.mcu), self._stop, self._link_dir() / "mcu"))
        if self.config.mcu_tcp_port is not None:
            self._mcu_ports.append(TcpPort(McuSession(self.mcu), self._stop, self.config.mcu_tcp_port))
        for port in self._mcu_ports:
            port.start()

    def stop(self) -> None:
        """Stop every thread, close every port and bus. Safe to call twice."""
        self._stop.set()
        for port in [*self._ports, *self._mcu_ports]:
            port.join()
        self._ports = []
        self._mcu_ports = []
        for node in self._ecus:
            node.signal_stop()
        for node in self._ecus:
            node.stop()
        self._ecus = []
        for link in [*self._extra_links, *([self._link] if self._link else [])]:
            link.bus.shutdown()
        self._extra_links = []
        self._link = None
        if self._own_link_dir is not None:
            shutil.rmtree(self._own_link_dir, ignore_errors=True)
            self._own_link_dir = None
        if self._started:
            log.info("car.stopped", vehicle=self.vehicle.name)
        self._started = False

    def __enter__(self) -> SimulatedCar:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------ where to connect

    def _port(self, kind: type[PtyPort] | type[TcpPort]) -> PtyPort | TcpPort:
        for port in self._ports:
            if isinstance(port, kind):
                return port
        raise HilError(f"this car has no {kind.kind} port (see CarConfig.pty / tcp_port / adapter)")

    @property
    def pty_path(self) -> str:
        """The adapter's serial device: a symlink that survives unplug/replug (like a udev name)."""
        port = self._port(PtyPort)
        assert isinstance(port, PtyPort)
        return str(port.link_path)

    @property
    def pty_device(self) -> str | None:
        """The /dev/pts/N the symlink currently points at (None while unplugged)."""
        port = self._port(PtyPort)
        assert isinstance(port, PtyPort)
        return port.device if port.plugged else None

    @property
    def tcp_port(self) -> int:
        port = self._port(TcpPort)
        assert isinstance(port, TcpPort)
        return port.port

    @property
    def mcu_pty_path(self) -> str:
        """The power MCU's serial device (a stable symlink, like the adapter's)."""
        for port in self._mcu_ports:
            if isinstance(port, PtyPort):
                return str(port.link_path)
        raise HilError("this car has no power MCU pty (see CarConfig.mcu / mcu_pty)")

    @property
    def mcu_tcp_url(self) -> str:
        """A pyserial URL for the power MCU's TCP port."""
        for port in self._mcu_ports:
            if isinstance(port, TcpPort):
                return f"socket://127.0.0.1:{port.port}"
        raise HilError("this car has no power MCU TCP port (see CarConfig.mcu_tcp_port)")

    @property
    def tcp_url(self) -> str:
        """A pyserial URL for the TCP port, e.g. for python-OBD's portstr."""
        return f"socket://127.0.0.1:{self.tcp_port}"

    # ------------------------------------------------------------ run-time control

    def set_scenario(self, scenario: str | Path | Scenario) -> None:
        """Switch scenario; its time starts at 0 and the DTC memories reload."""
        self.model.set_scenario(_scenario(scenario))

    def inject(self, fault: Fault) -> None:
        """Switch a fault on (replacing one of the same kind)."""
        self.faults.set(fault)
        if fault.kind is FaultKind.ADAPTER_UNPLUGGED:
            for port in self._ports:
                port.set_plugged(False)
        log.info("fault.on", **fault.describe())

    def clear_fault(self, kind: FaultKind | str) -> bool:
        """Switch a fault off; plugging the adapter back in for `adapter-unplugged`."""
        kind = parse_kind(kind) if isinstance(kind, str) else kind
        was_on = self.faults.clear(kind)
        if kind is FaultKind.ADAPTER_UNPLUGGED:
            for port in self._ports:
                port.set_plugged(True)
        log.info("fault.off", fault=str(kind), was_on=was_on)
        return was_on

    def clear_faults(self) -> None:
        for fault in self.faults.active():
            self.clear_fault(fault.kind)

    def status(self) -> dict[str, object]:
        power = self.power.state()
        out: dict[str, object] = {
            "vehicle": self.vehicle.name,
            "scenario": self.model.scenario.name,
            "scenario_time": round(self.model.scenario_time(), 3),
            "bus": self.bus_config.describe(),
            "battery_voltage": power.battery_voltage,
            "ignition": power.ignition,
            "faults": [f.describe() for f in self.faults.active()],
        }
        for port in self._ports:
            if isinstance(port, PtyPort):
                out["pty"], out["pty_device"] = str(port.link_path), port.device if port.plugged else None
            else:
                out["tcp_port"] = port.port
        for port in self._mcu_ports:
            if isinstance(port, PtyPort):
                out["mcu_pty"] = str(port.link_path)
            else:
                out["mcu_tcp_port"] = port.port
        if self.config.mcu:
            out["mcu"] = self.mcu.describe()
        return out
