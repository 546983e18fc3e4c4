"""``cloud-master telemetry``: latest values, a series over time, export, and a plot."""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import json
import re
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autopi_common.cli import EXIT_FAIL, EXIT_OK, EXIT_USAGE
from cloud_master.ingest import store_url
from cloud_master.pki import KeyState, KeyStore
from cloud_master.telemetry import open_store

_RELATIVE = re.compile(r"^(?P<n>\d+(?:\.\d+)?)(?P<unit>[smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def add_parser(verbs: Any, config_option: Any) -> None:
    tele = verbs.add_parser("telemetry", help="query, export and plot vehicle telemetry",
                            description="Series are named like obd.RPM; a bare name (RPM) "
                                        "means obd.RPM. Times: 'now', 30m, 1h, 2d (ago), an ISO "
                                        "date/time (UTC unless it says otherwise) or unix seconds.")
    config_option(tele, top=False)
    sub = tele.add_subparsers(dest="action", metavar="ACTION", required=True)
    latest = sub.add_parser("latest", help="the newest value of every series, per vehicle")
    config_option(latest, top=False)
    latest.add_argument("target", nargs="?", default="*", help="vehicle id glob (default: all)")
    latest.add_argument("--series", action="append", help="only these series")
    latest.add_argument("--out", default="table", choices=("table", "json"))
    for name, text in (("query", "a vehicle's series over a time range"),
                       ("export", "samples as CSV or JSON lines"),
                       ("plot", "a PNG plot of series over time (needs matplotlib)")):
        cmd = sub.add_parser(name, help=text)
        config_option(cmd, top=False)
        cmd.add_argument("vehicle", help="vehicle id" + (" glob" if name == "export" else ""))
        cmd.add_argument("series", nargs="*" if name == "export" else "+", help="series names")
        cmd.add_argument("--since", default="1h", help="start (default: 1h ago)")
        cmd.add_argument("--until", default="now", help="end (default: now)")
        if name == "query":
            cmd.add_argument("--limit", type=int)
            cmd.add_argument("--out", default="table", choices=("table", "json", "csv"))
        elif name == "export":
            cmd.add_argument("--format", default="csv", choices=("csv", "jsonl"))
            cmd.add_argument("-o", "--output", help="file to write (default: stdout)")
        else:
            cmd.add_argument("-o", "--output", required=True, help="PNG file to write")


def parse_time(text: str, now: float | None = None) -> float:
    """'now', '90s'/'30m'/'1h'/'2d'/'1w' ago, ISO-8601, or unix seconds."""
    now = time.time() if now is None else now
    text = text.strip()
    if text == "now":
        return now
    match = _RELATIVE.match(text)
    if match:
        return now - float(match["n"]) * _UNIT_S[match["unit"]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as err:
        raise ValueError(f"cannot read the time {text!r}: use now, 30m, 1h, 2d, an ISO date "
                         "or unix seconds") from err
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def series_name(name: str) -> str:
    return name if "." in name else f"obd.{name}"


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="seconds")


def _shown(sample: Any) -> str:
    value = sample.text if sample.value is None else f"{sample.value:g}"
    return f"{value} {sample.unit or ''}".rstrip()


def run(opts: Mapping[str, Any], ns: argparse.Namespace) -> int:
    store = open_store(store_url(dict(opts)))
    try:
        if ns.action == "latest":
            return _latest(opts, store, ns)
        since, until = parse_time(ns.since), parse_time(ns.until)
        if since > until:
            print(f"cloud-master telemetry: --since {ns.since} is after --until {ns.until}",
                  file=sys.stderr)
            return EXIT_USAGE
        series = [series_name(s) for s in ns.series]
        if ns.action == "query":
            return _query(store, ns.vehicle, series, since, until, ns)
        if ns.action == "export":
            return _export(opts, store, ns, series, since, until)
        return _plot(store, ns.vehicle, series, since, until, ns.output)
    finally:
        store.close()


def _vehicles(opts: Mapping[str, Any], store: Any, pattern: str) -> list[str] | None:
    """Vehicle ids a glob selects, among accepted keys and vehicles with samples stored."""
    if pattern == "*":
        return None
    known = set(KeyStore(opts["pki_dir"]).list().get(KeyState.ACCEPTED, []))
    known.update(sample.minion_id for sample in store.latest())
    return sorted(m for m in known if fnmatch.fnmatchcase(m, pattern)) or [pattern]


def _latest(opts: Mapping[str, Any], store: Any, ns: argparse.Namespace) -> int:
    series = [series_name(s) for s in ns.series] if ns.series else None
    rows = store.latest(_vehicles(opts, store, ns.target), series)
    if ns.out == "json":
        out: dict[str, dict[str, Any]] = {}
        for s in rows:
            out.setdefault(s.minion_id, {})[s.series] = {
                "value": s.text if s.value is None else s.value, "unit": s.unit, "ts": s.ts}
        print(json.dumps(out, indent=4, sort_keys=True))
    else:
        for s in sorted(rows, key=lambda r: (r.minion_id, r.series)):
            print(f"{s.minion_id:<16} {s.series:<28} {_shown(s):<20} {_iso(s.ts)}")
    return EXIT_OK if rows else EXIT_FAIL


def _query(store: Any, vehicle: str, series: list[str], since: float, until: float,
           ns: argparse.Namespace) -> int:
    rows = list(store.query(vehicle, series, since, until, ns.limit))
    if ns.out == "json":
        print(json.dumps([{"ts": s.ts, "series": s.series, "value": s.value, "text": s.text,
                           "unit": s.unit} for s in rows], indent=2))
    elif ns.out == "csv":
        store.export(sys.stdout, "csv", minion_ids=[vehicle], series=series, since=since,
                     until=until)
    else:
        for s in rows:
            print(f"{_iso(s.ts)}  {s.series:<24} {_shown(s)}")
    if not rows:
        print(f"no samples of {', '.join(series)} from {vehicle} in that range", file=sys.stderr)
    return EXIT_OK if rows else EXIT_FAIL


def _export(opts: Mapping[str, Any], store: Any, ns: argparse.Namespace, series: list[str],
            since: float, until: float) -> int:
    kwargs = {"minion_ids": _vehicles(opts, store, ns.vehicle), "series": series or None,
              "since": since, "until": until}
    if ns.output:
        with Path(ns.output).open("w", encoding="utf-8", newline="") as out:
            count = store.export(out, ns.format, **kwargs)
        print(f"wrote {count} samples to {ns.output}", file=sys.stderr)
    else:
        count = store.export(sys.stdout, ns.format, **kwargs)
    return EXIT_OK


def _plot(store: Any, vehicle: str, series: list[str], since: float, until: float,
          output: str) -> int:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("cloud-master telemetry plot needs matplotlib: pip install 'autopi-telematics[plot]'",
              file=sys.stderr)
        return EXIT_FAIL
    fig, axes = plt.subplots(len(series), 1, sharex=True, figsize=(10, 2.6 * len(series)),
                             squeeze=False)
    found = 0
    for ax, name in zip(axes[:, 0], series, strict=True):
        rows = [s for s in store.query(vehicle, [name], since, until) if s.value is not None]
        found += len(rows)
        times = [datetime.datetime.fromtimestamp(s.ts, datetime.UTC) for s in rows]
        ax.plot(times, [s.value for s in rows], linewidth=1.2)
        unit = rows[0].unit if rows and rows[0].unit else ""
        ax.set_ylabel(f"{name}\n{unit}".strip())
        ax.grid(True, alpha=0.3)
    axes[0, 0].set_title(f"{vehicle}: {_iso(since)} to {_iso(until)} (UTC)")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(output, dpi=100)
    plt.close(fig)
    print(f"plotted {found} samples to {output}", file=sys.stderr)
    return EXIT_OK if found else EXIT_FAIL
