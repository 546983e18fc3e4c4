"""Execution module ``obd``: read the car through its OBD-II port (ELM327/STN adapter).

Every function goes through the adapter's one connection owner (``ctx.services["obd"]``,
registered by the daemon); without one (``autopi-agent call``) a temporary owner is made
from the ``obd:`` config section and closed when the call ends.

A failure is reported as ``ERROR: <kind>: <what happened and what to do>`` with a retcode
per kind, so a script can tell them apart without reading the text:

=================== ======= =====================================================
kind                retcode meaning
=================== ======= =====================================================
invalid             40      bad arguments or obd settings
unsupported         41      the car does not list the PID, or the adapter lacks it
no_data             42      no ECU answered (NO DATA)
negative_response   43      an ECU refused: 7F <service> <NRC>
bus_error           44      CAN ERROR, BUS INIT ERROR ...
bad_response        45      a truncated or garbled answer (never decoded)
unable_to_connect   46      the adapter answers, the car does not (ignition off?)
adapter_gone        47      no adapter on the port (unplugged?)
timeout             48      no answer within the bound (obd.timeout, 5 s by default)
adapter_busy        49      another process has the adapter open (the daemon, when
                            this is a local call: send the job from the master)
=================== ======= =====================================================

``obd.query_many`` reports per-command failures in place, as ``{"error": kind,
"message": ...}``, with the retcode of the first failure.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from autopi_agent.minion.context import AgentContext, WithRetcode, current_job
from autopi_agent.minion.errors import CommandExecutionError
from autopi_agent.obd import car
from autopi_agent.obd.commands import check_header, resolve
from autopi_agent.obd.errors import ObdAdapterGone, ObdConfigError, ObdError, ObdTimeout
from autopi_agent.obd.monitor import MAX_FRAMES, MAX_SECONDS
from autopi_agent.obd.owner import ObdOwner
from autopi_agent.obd.session import Deadline, Session
from autopi_agent.obd.settings import ObdSettings
from autopi_agent.portlock import lock_dir

__all__ = ["battery", "clear_dtc", "commands", "dtc", "monitor", "protocol", "query",
           "query_many", "status", "vin"]

P = ParamSpec("P")
R = TypeVar("R")


def _reported(func: Callable[P, R]) -> Callable[P, R]:
    """Turn an ObdError into the job error ``<kind>: <message>`` with the kind's retcode."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ObdError as err:
            raise CommandExecutionError(f"{err.kind}: {err}", retcode=err.retcode) from err

    return wrapper


@contextmanager
def _owner(ctx: AgentContext) -> Iterator[ObdOwner]:
    registered = ctx.services.get("obd")
    if isinstance(registered, ObdOwner):
        yield registered
        return
    settings = ObdSettings.from_opts(ctx.opts.get("obd"))
    if not settings.enabled:
        raise ObdConfigError("OBD support is off: set obd.port in the agent config "
                             "(such as /dev/serial0 or socket://192.168.0.10:35000)")
    cachedir = ctx.opts.get("cachedir")  # always set by the config loader (absolute)
    owner = ObdOwner(settings, lock_dir=lock_dir(cachedir) if cachedir else None).start()
    try:
        yield owner
    finally:
        owner.close()


def _call(ctx: AgentContext, work: Callable[[Session, Deadline], R], what: str, *,
          needs_car: bool = True, timeout: float | None = None) -> R:
    control = current_job()
    with _owner(ctx) as owner:
        return owner.call(work, what=what, needs_car=needs_car, timeout=timeout,
                          cancelled=lambda: control.cancelled)


@_reported
def query(ctx: AgentContext, name: str | None = None, mode: Any = None, pid: Any = None,
          header: str | None = None, force: bool = False, decode: bool = True) -> dict[str, Any]:
    """Read one value from the car: a python-OBD command name, or a mode and PID in hex.

    name
        A python-OBD command such as ``RPM``, ``SPEED``, ``COOLANT_TEMP`` (see obd.commands).
    mode, pid
        Instead of a name: the service and PID as hex, such as ``mode=01 pid=0C``. Write
        them as hex digits (``0C``), not ``0x0C``.
    header
        Send the request to one ECU (``7E0`` engine, ``7E1`` transmission) instead of all.
    force
        Send it even if the car does not list the PID, or python-OBD cannot decode it.
    decode
        False returns the answer's raw bytes as hex instead of a decoded value.

    Returns ``{"command", "value", "unit", "raw", "ecus", "timestamp", "mode", "pid"}``:
    ``value`` in ``unit`` (``rpm``, ``km/h``, ``°C``, ``%``, ``V`` ...), ``raw`` the
    answering messages' bytes (service byte first) as hex, ``ecus`` who answered,
    ``timestamp`` seconds since the epoch. Negative (7F) and truncated answers are errors,
    never values.

    CLI Example::

        cloud-master run car-0001 obd.query RPM
        cloud-master run car-0001 obd.query mode=01 pid=0C decode=False
    """
    command = resolve(name, mode=mode, pid=pid, force=force)
    target = check_header(header)

    def work(session: Session, deadline: Deadline) -> dict[str, Any]:
        return car.query(session, deadline, command, header=target, force=force,
                         decode=decode).to_dict()

    return _call(ctx, work, f"obd.query {command.name}")


@_reported
def query_many(ctx: AgentContext, *names: str, header: str | None = None, force: bool = False,
               decode: bool = True) -> WithRetcode:
    """Read several commands one after the other, in one turn at the adapter.

    names
        python-OBD command names, such as ``RPM SPEED COOLANT_TEMP``.
    header, force, decode
        As for obd.query, applied to each.

    Returns ``{NAME: reading}`` where each reading is what obd.query returns, or
    ``{"error": kind, "message": text}`` for a command that failed; the job's retcode is
    that of the first failure (0 when all were read). A timeout or a lost adapter fails
    the whole call.

    CLI Example::

        cloud-master run car-0001 obd.query_many RPM SPEED COOLANT_TEMP
    """
    if not names:
        raise ObdConfigError("obd.query_many needs at least one command name, such as RPM")
    chosen = [resolve(name, force=force) for name in names]
    target = check_header(header)

    def work(session: Session, deadline: Deadline) -> tuple[dict[str, Any], int]:
        out: dict[str, Any] = {}
        first_failure = 0
        for command in chosen:
            try:
                out[command.name] = car.query(session, deadline, command, header=target,
                                              force=force, decode=decode).to_dict()
            except (ObdAdapterGone, ObdTimeout):
                raise
            except ObdError as err:
                out[command.name] = err.to_dict()
                first_failure = first_failure or err.retcode
        return out, first_failure

    timeout = None if len(chosen) == 1 else _settings(ctx).timeout * (len(chosen) + 1)
    result, retcode = _call(ctx, work, f"obd.query_many {' '.join(names)}", timeout=timeout)
    return WithRetcode(result, retcode)


def _settings(ctx: AgentContext) -> ObdSettings:
    registered = ctx.services.get("obd")
    if isinstance(registered, ObdOwner):
        return registered.settings
    return ObdSettings.from_opts(ctx.opts.get("obd"))


@_reported
def commands(ctx: AgentContext) -> list[dict[str, Any]]:
    """List the commands this car supports (from its supported-PID bitmaps).

    Returns ``[{"name", "mode", "pid", "description"}, ...]``; a PID the car lists but
    python-OBD cannot decode has ``name`` null (read it with ``obd.query mode=.. pid=..
    force=True decode=False``).

    CLI Example::

        cloud-master run car-0001 obd.commands
    """
    return _call(ctx, lambda session, deadline: car.list_commands(session), "obd.commands")


@_reported
def status(ctx: AgentContext) -> dict[str, Any]:
    """Report the OBD connection: adapter, protocol, state, battery voltage and ignition.

    Returns ``state`` (``idle``, ``adapter_connected``: the car does not answer,
    ``car_connected``, ``disconnected``), ``port``, ``adapter`` (its ATI answer),
    ``protocol``/``protocol_name`` once the car answered, ``supported_pids``,
    ``battery_voltage`` (V) and ``ignition`` (true/false, null if the adapter cannot
    tell) when the adapter answers, and ``last_error``/``retry_in`` (s) after a failure.
    Never fails because the adapter or car is away: that is what it reports.

    CLI Example::

        cloud-master run car-0001 obd.status
    """
    with _owner(ctx) as owner:
        live: dict[str, Any] = {}

        def work(session: Session, deadline: Deadline) -> dict[str, Any]:
            return {"battery_voltage": car.adapter_voltage(session, deadline),
                    "ignition": car.ignition(session, deadline)}

        try:
            live = owner.call(work, what="obd.status", needs_car=False)
        except ObdError as err:
            live = {"error": err.to_dict()}
        return {**owner.info(), **live}


@_reported
def battery(ctx: AgentContext) -> dict[str, Any]:
    """Read the battery voltage at the OBD connector (the adapter's ATRV), in volts.

    Works with the ignition off. Returns ``{"voltage", "unit": "V", "timestamp"}``.

    CLI Example::

        cloud-master run car-0001 obd.battery
    """
    voltage = _call(ctx, car.adapter_voltage, "obd.battery", needs_car=False)
    return {"voltage": voltage, "unit": "V", "timestamp": time.time()}


@_reported
def dtc(ctx: AgentContext) -> dict[str, Any]:
    """Read diagnostic trouble codes: stored (service 03), pending (07), permanent (0A).

    Returns ``{"stored": [...], "pending": [...], "permanent": [...]}``, each code as
    ``{"code": "P0301", "description", "ecu": "7E8"}``, plus ``mil`` (check-engine lamp)
    and ``dtc_count`` when the car reports them, and ``unanswered`` naming any list no ECU
    answered for (older cars have no permanent codes).

    CLI Example::

        cloud-master run car-0001 obd.dtc
    """
    return _call(ctx, car.read_dtcs, "obd.dtc")


@_reported
def clear_dtc(ctx: AgentContext, confirm: bool = False) -> dict[str, Any]:
    """Clear trouble codes and freeze frames in every ECU (service 04). Needs confirm=True.

    This also resets the emission monitors (the car will not pass an inspection until
    they complete again) and turns off the check-engine lamp until a fault recurs. Most
    ECUs refuse with the engine running (negative_response, NRC 22): ignition on, engine
    off. Returns ``{"cleared": true, "ecus": [...]}``.

    CLI Example::

        cloud-master run car-0001 obd.clear_dtc confirm=True
    """
    if confirm is not True:
        raise ObdConfigError("obd.clear_dtc erases trouble codes, freeze frames and monitor "
                             "results: run it again with confirm=True")
    return _call(ctx, car.clear_dtcs, "obd.clear_dtc")


@_reported
def vin(ctx: AgentContext) -> dict[str, Any]:
    """Read the vehicle identification number (service 09 PID 02).

    Decoded from the answer's bytes (python-OBD's decoder would strip leading and
    trailing 0, 1 and 2 characters). Returns ``{"vin": "WAUZZZ8V7JA031575", "raw": hex}``.

    CLI Example::

        cloud-master run car-0001 obd.vin
    """
    return _call(ctx, car.read_vin, "obd.vin")


@_reported
def protocol(ctx: AgentContext, protocol: str | None = None) -> dict[str, Any]:
    """Show the OBD protocol, or switch to another one.

    protocol
        ``auto`` or an ELM327 protocol number: 1 J1850 PWM, 2 J1850 VPW, 3 ISO 9141-2,
        4/5 ISO 14230-4 (KWP), 6/8 CAN 11-bit 500/250 kbit/s, 7/9 CAN 29-bit, A J1939.
        Without it, nothing changes. A number is used as given (no fallback); if the car
        does not answer on it the adapter goes back to auto and the call fails.

    Returns ``{"protocol": "6", "name": "ISO 15765-4 (CAN 11/500)", ...}`` (protocol null
    while the car does not answer). The change lasts until the agent reconnects; set
    obd.protocol in the agent config to keep it.

    CLI Example::

        cloud-master run car-0001 obd.protocol
        cloud-master run car-0001 obd.protocol 6
    """
    if protocol is None:
        def show(session: Session, deadline: Deadline) -> dict[str, Any]:
            return {"protocol": session.protocol_id or None,
                    "name": session.protocol_name or None,
                    "configured": session.settings.protocol, "fallback": session.fell_back}

        return _call(ctx, show, "obd.protocol", needs_car=False)
    settings = _settings(ctx)
    return _call(ctx, lambda s, d: car.set_protocol(s, d, str(protocol)),
                 f"obd.protocol {protocol}", needs_car=False,
                 timeout=settings.connect_timeout * 2 + settings.timeout)


@_reported
def monitor(ctx: AgentContext, duration: float = 2.0, count: int = 1000) -> dict[str, Any]:
    """Listen to the CAN bus and return the raw frames heard (the adapter's ATMA).

    duration
        Seconds to listen, at most 60.
    count
        Stop after this many frames, at most 10000.

    Returns ``{"frames": [{"id": "7E8", "data": "04410C0C30", "t": 0.12}, ...], "count",
    "seconds", "stopped_by"}`` (``duration``, ``count``, ``adapter`` when the adapter
    stopped by itself, e.g. on BUFFER FULL, listed under ``status``). Adapters without
    ATMA give ``unsupported``.

    CLI Example::

        cloud-master run car-0001 obd.monitor duration=5 count=200
    """
    try:
        seconds, limit = float(duration), int(count)
    except (TypeError, ValueError) as err:
        raise ObdConfigError(f"monitor: duration and count must be numbers: {err}") from err
    if not 0 < seconds <= MAX_SECONDS or not 0 < limit <= MAX_FRAMES:
        raise ObdConfigError(f"monitor: duration must be 0-{MAX_SECONDS:g} s and count "
                             f"1-{MAX_FRAMES}")
    control = current_job()

    def work(session: Session, deadline: Deadline) -> dict[str, Any]:
        return car.monitor(session, deadline, seconds=seconds, limit=limit,
                           cancelled=lambda: control.cancelled)

    return _call(ctx, work, "obd.monitor",
                 timeout=seconds + 2 * _settings(ctx).timeout + 2.0)
