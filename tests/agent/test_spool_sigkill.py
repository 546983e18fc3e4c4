"""SIGKILL the spool writer 50 times mid-work: never corrupt, nothing acknowledged lost or back.

Precisely, after every kill and at the end:

- ``PRAGMA integrity_check`` is ``ok`` (checked with plain sqlite3 before the spool reopens);
- every id whose put returned is still in the spool, or its ack had started (intent logged);
- no id whose ack returned is in the spool;
- ids are unique: across all puts of all runs, and in the spool;
- the spool's per-kind totals equal what it holds.
"""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from autopi_agent.spool import KINDS, Spool

REPO = Path(__file__).resolve().parents[2]
KILLS = 50


def _ids(path: Path) -> list[str]:
    if not path.exists():
        return []
    text = path.read_text()
    # A line cut by the kill (no newline yet) was never a completed record.
    return text.split("\n")[:-1]


def _spawn(spool: Path, logs: Path, seed: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.agent.spool_writer", str(spool),
                             str(logs), str(seed)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _kill_mid_work(proc: subprocess.Popen[str], rng: random.Random) -> None:
    try:
        # One run in ten is killed while it starts and opens the spool (the boot bump).
        if rng.random() >= 0.1:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line == "ready\n", proc.stderr.read() if proc.stderr else line
            proc.wait(timeout=rng.uniform(0.0, 0.4))
            pytest.fail(f"the writer exited by itself:\n{proc.stderr.read() if proc.stderr else ''}")
    except subprocess.TimeoutExpired:
        pass
    finally:
        proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _integrity(spool: Path) -> str:
    db = sqlite3.connect(spool)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


def _check(spool_path: Path, logs: Path) -> tuple[int, int]:
    assert _integrity(spool_path) == "ok"
    puts, intents, acked = (_ids(logs / f"{name}.log") for name in ("puts", "intents", "acked"))
    with Spool(spool_path, max_bytes=1 << 30) as spool:
        held = [item.id for item in spool.peek(limit=10**9, max_bytes=1 << 40)]
        stats = spool.stats()
        by_kind = {kind: [i for i in spool.peek(limit=10**9, max_bytes=1 << 40, kinds=[kind])]
                   for kind in KINDS}
    present = set(held)
    assert len(held) == len(present), "duplicate ids in the spool"
    assert len(puts) == len(set(puts)), "an id was handed out twice"
    lost = set(puts) - present - set(intents)
    assert not lost, f"{len(lost)} put ids neither in the spool nor acked, e.g. {sorted(lost)[:3]}"
    back = present & set(acked)
    assert not back, f"{len(back)} acked ids are back in the spool, e.g. {sorted(back)[:3]}"
    for kind, items in by_kind.items():
        assert stats.count[kind] == len(items)
        assert stats.bytes[kind] == sum(item.size for item in items)
    return len(puts), len(acked)


@pytest.mark.slow
@pytest.mark.timeout(110)
def test_sigkill_fifty_times_never_corrupts_or_loses(tmp_path: Path) -> None:
    spool, logs = tmp_path / "spool.sqlite", tmp_path / "logs"
    logs.mkdir()
    rng = random.Random(20240601)
    for run in range(KILLS):
        _kill_mid_work(_spawn(spool, logs, seed=run), rng)
        if spool.exists():
            _check(spool, logs)
    puts, acked = _check(spool, logs)
    # Not vacuous: the writers did real work between kills.
    assert puts > 2000 and acked > 500, (puts, acked)
    assert not list(tmp_path.glob("*.corrupt-*"))
