"""cloud-master telemetry latest / query / export / plot against a real store file."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cloud_master.config import load_master_config
from cloud_master.ingest import store_url
from cloud_master.telemetry import open_store
from cloud_master.telemetry.model import Sample
from cloud_master.telemetry_cli import parse_time
from tests.fleet import REPO, _env, write_yaml

NOW = time.time()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = write_yaml(tmp_path / "master.yaml", {"root_dir": str(tmp_path)})
    store = open_store(store_url(load_master_config(path)))
    samples = [Sample("car-0001", f"u{i}", NOW - 600 + i * 10, "obd.RPM", 800.0 + i, None, "rpm")
               for i in range(60)]
    samples += [Sample("car-0001", f"s{i}", NOW - 600 + i * 10, "obd.SPEED", float(i), None, "kph")
                for i in range(60)]
    samples += [Sample("car-0002", "v1", NOW - 5, "obd.VIN_TEXT", None, "WVWZZZ1KZAW000001", None)]
    store.ingest(samples)
    store.close()
    return path


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cloud_master.cli", "-c", str(config),
                           "telemetry", *args], capture_output=True, text=True, env=_env(),
                          cwd=REPO, timeout=60)


def test_latest_json(config: Path) -> None:
    proc = cli(config, "latest", "--out", "json")
    data = json.loads(proc.stdout)
    assert data["car-0001"]["obd.RPM"]["value"] == 859.0
    assert data["car-0002"]["obd.VIN_TEXT"]["value"] == "WVWZZZ1KZAW000001"


def test_query_range_and_bare_series_names(config: Path) -> None:
    # The samples are ten seconds apart: the five minutes before NOW hold 30 of them.
    proc = cli(config, "query", "car-0001", "RPM", "--since", str(NOW - 300), "--until",
               str(NOW), "--out", "json")
    rows = json.loads(proc.stdout)
    assert proc.returncode == 0
    assert all(r["series"] == "obd.RPM" and NOW - 300 <= r["ts"] <= NOW for r in rows)
    assert len(rows) == 30
    assert cli(config, "query", "car-0001", "RPM", "--since", "1h", "--until", "2h").returncode == 2


def test_export_csv_and_jsonl(config: Path, tmp_path: Path) -> None:
    proc = cli(config, "export", "car-*", "--since", "1h", "--format", "csv")
    table = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert len(table) == 121
    out = tmp_path / "trip.jsonl"
    cli(config, "export", "car-0001", "SPEED", "--since", "1h", "--format", "jsonl", "-o", str(out))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 60 and {line["series"] for line in lines} == {"obd.SPEED"}


def test_plot_writes_a_png(config: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "trip.png"
    proc = cli(config, "plot", "car-0001", "RPM", "SPEED", "--since", "1h", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("text,expected", [("now", 1000.0), ("30m", 1000.0 - 1800),
                                           ("2d", 1000.0 - 172800), ("5", 5.0),
                                           ("1970-01-01T00:01:00Z", 60.0)])
def test_parse_time(text: str, expected: float) -> None:
    assert parse_time(text, now=1000.0) == expected


def test_parse_time_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="cannot read the time"):
        parse_time("yesterday-ish")
