"""A spool writer to be SIGKILLed: puts, peeks and acks forever, logging what returned.

    python -m tests.agent.spool_writer SPOOL LOGDIR SEED

Logs (one id a line, appended with unbuffered ``os.write``, so a line is in the kernel before
the next spool call starts and a SIGKILL cannot lose it; fsync would only matter for a power
cut, which this writer does not simulate):

- ``puts.log``: ids whose ``put``/``put_many`` returned;
- ``intents.log``: ids about to be acked (written before ``ack`` is called);
- ``acked.log``: ids whose ``ack`` returned.

Prints ``ready`` once the spool is open, so the parent can kill it in the middle of work.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

from autopi_agent.spool import Spool


def _log(fd: int, ids: list[str]) -> None:
    if ids:
        os.write(fd, "".join(f"{item_id}\n" for item_id in ids).encode())


def main(spool_path: str, log_dir: str, seed: int) -> None:
    rng = random.Random(seed)
    logs = {name: os.open(Path(log_dir) / f"{name}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                          0o600) for name in ("puts", "intents", "acked")}
    spool = Spool(spool_path, max_bytes=1 << 30, sync_interval_s=0.05)
    print("ready", flush=True)
    n = 0
    while True:
        n += 1
        roll = rng.random()
        if roll < 0.45:
            payloads = [{"ts": 1.7e9 + n, "series": "obd.RPM", "value": float(n + k), "pad": "x" * 40}
                        for k in range(rng.randint(1, 20))]
            _log(logs["puts"], spool.put_many("telemetry", payloads))
        elif roll < 0.55:
            _log(logs["puts"], [spool.put("return", {"jid": str(n), "ret": {"ok": True}})])
        elif roll < 0.60:
            _log(logs["puts"], [spool.put("event", {"tag": "vehicle/test", "n": n})])
        elif roll < 0.95:
            items = spool.peek(limit=rng.randint(1, 60))
            ids = [item.id for item in items[:rng.randint(0, len(items))]]
            _log(logs["intents"], ids)
            spool.ack(ids)
            _log(logs["acked"], ids)
        elif roll < 0.98:
            spool.enforce_limits()
        else:
            spool.sync()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
