"""Job ids in Salt's format: the UTC time as 20 digits (YYYYmmddHHMMSSffffff)."""

from __future__ import annotations

import datetime
import threading

_lock = threading.Lock()
_last: list[str] = [""]


def gen_jid(now: datetime.datetime | None = None) -> str:
    """A new job id, strictly increasing within this process."""
    moment = now or datetime.datetime.now(datetime.UTC)
    jid = moment.strftime("%Y%m%d%H%M%S%f")
    with _lock:
        if jid <= _last[0]:
            jid = str(int(_last[0]) + 1)
        _last[0] = jid
    return jid


def is_jid(value: object) -> bool:
    """True for a 20-digit job id."""
    return isinstance(value, str) and len(value) == 20 and value.isdigit()
