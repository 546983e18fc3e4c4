"""What each ``cloud-master`` verb does (the argument parsing is in ``cli``)."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
from collections.abc import Mapping
from typing import Any

from autopi_common.cli import EXIT_FAIL, EXIT_OK, EXIT_USAGE
from autopi_proto.args import cli_arguments
from cloud_master.client import MasterClient, MasterUnavailable
from cloud_master.output import render, render_one


def serve(opts: Mapping[str, Any], ns: argparse.Namespace) -> int:
    from cloud_master.server import run_master

    asyncio.run(run_master(opts))
    return EXIT_OK


def run(opts: Mapping[str, Any], ns: argparse.Namespace) -> int:
    tgt_type = ns.tgt_type or "glob"
    tgt: str | list[str] = ns.target.split(",") if tgt_type == "list" else ns.target
    arg = cli_arguments(ns.args)
    timeout = ns.timeout if ns.timeout is not None else float(opts["timeout"])
    with MasterClient.from_opts(opts) as client:
        if ns.is_async:
            jid, minions = client.publish(tgt, ns.fun, arg, tgt_type=tgt_type, ret=ns.returner)
            print(f"Executed command with job ID: {jid}")
            return EXIT_OK
        return _stream(client, tgt, tgt_type, ns, arg, timeout)


def _stream(client: MasterClient, tgt: str | list[str], tgt_type: str, ns: argparse.Namespace,
            arg: list[Any], timeout: float) -> int:
    color = sys.stdout.isatty()
    returns: dict[str, Any] = {}
    failed = False
    expected: list[str] = []
    missing: list[str] = []
    for item in client.run_iter(tgt, ns.fun, arg, tgt_type=tgt_type, timeout=timeout,
                                ret=ns.returner):
        if "minions" in item and "jid" in item and "done" not in item:
            expected = list(item["minions"])
            if not expected:
                print("No minions matched the target. No command was sent, no jid was assigned.",
                      file=sys.stderr)
                return EXIT_FAIL
        elif "return" in item:
            ret = item["return"]
            returns[ret["id"]] = ret["return"]
            failed |= ret.get("retcode", 0) != 0
            fmt = ns.out or ("highstate" if ret.get("out") == "highstate" else "yaml")
            if fmt != "json":
                print(render_one(ret["id"], ret["return"], fmt, color=color,
                                 id_width=max(map(len, expected), default=0)), flush=True)
        elif item.get("done"):
            missing = list(item.get("missing", []))
    if ns.out == "json":
        print(render(returns, "json"))
    for minion_id in missing:
        print(f"{minion_id}: Minion did not return. [No response]", file=sys.stderr)
    return EXIT_FAIL if failed or missing else EXIT_OK


def key(opts: Mapping[str, Any], ns: argparse.Namespace) -> int:
    from cloud_master.pki import KeyStore

    store = KeyStore(opts["pki_dir"], int(opts["keysize"]))
    if ns.action == "list":
        listing = {str(state): ids for state, ids in store.list().items()}
        _print_keys(listing, ns.out)
        return EXIT_OK
    if ns.action == "finger":
        fingers = store.finger(ns.pattern or "*")
        out: dict[str, Any] = {str(state): found for state, found in fingers.items() if found}
        out["master"] = {"master.pub": store.master_keys().fingerprint()}
        _print_keys(out, ns.out)
        return EXIT_OK
    if not ns.pattern:
        print(f"cloud-master key {ns.action}: name a minion id or glob", file=sys.stderr)
        return EXIT_USAGE
    matches = {str(state): ids for state, ids in store.match(ns.pattern).items() if ids}
    if not matches:
        print(f"The key glob {ns.pattern!r} does not match any keys.", file=sys.stderr)
        return EXIT_FAIL
    if not ns.yes and sys.stdin.isatty() and not _confirm(ns.action, matches):
        return EXIT_FAIL
    if ns.action == "accept":
        changed = store.accept(ns.pattern, include_rejected=ns.include_rejected)
    elif ns.action == "reject":
        changed = store.reject(ns.pattern, include_accepted=ns.include_accepted)
    else:
        changed = store.delete(ns.pattern)
    _print_keys({f"{ns.action}ed" if ns.action != "delete" else "deleted":
                 sorted(i for ids in changed.values() for i in ids)}, ns.out)
    _tell_master(opts)
    return EXIT_OK


def _confirm(action: str, matches: Mapping[str, list[str]]) -> bool:
    print(f"The following keys are going to be {action}ed:")
    _print_keys(matches, "yaml")
    return input("Proceed? [n/Y] ").strip().lower() in ("", "y", "yes")


def _print_keys(listing: Mapping[str, Any], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(listing, indent=4, sort_keys=True))
        return
    for state, ids in listing.items():
        print(f"{state}:")
        if isinstance(ids, Mapping):
            for name, value in ids.items():
                print(f"    {name}:  {value}")
        else:
            for name in ids:
                print(f"    {name}")


def _tell_master(opts: Mapping[str, Any]) -> None:
    """Let a running master re-read its keys (and rotate the shared key) at once."""
    try:
        with MasterClient.from_opts(opts) as client:
            client.keys_changed()
    except (MasterUnavailable, ValueError):
        pass  # no master running: it reads the key store when it starts


def jobs(opts: Mapping[str, Any], ns: argparse.Namespace) -> int:
    from pathlib import Path

    from cloud_master.jobcache import SqliteJobCache

    cache = SqliteJobCache(Path(opts["cachedir"]) / "jobs.sqlite")
    try:
        if ns.action == "list":
            listed = cache.list_jobs(limit=ns.limit)
            if ns.out:
                print(render({job.jid: {"fun": job.fun, "arg": list(job.arg), "tgt": job.tgt,
                                        "tgt_type": job.tgt_type, "user": job.user,
                                        "started": job.started, "minions": list(job.minions)}
                              for job in listed}, ns.out))
                return EXIT_OK
            for job in listed:
                when = datetime.datetime.fromtimestamp(job.started).isoformat(timespec="seconds")
                print(f"{job.jid}  {when}  {job.fun:<24} {job.tgt!s:<16} "
                      f"{len(job.minions)} minion(s)")
            return EXIT_OK
        if not ns.jid:
            print("cloud-master jobs show: name a job id (see `jobs list`)", file=sys.stderr)
            return EXIT_USAGE
        record = cache.get_job(ns.jid)
        if record is None:
            print(f"no job {ns.jid} in the job cache", file=sys.stderr)
            return EXIT_FAIL
        job = record.job
        print(f"jid: {job.jid}\nfunction: {job.fun}\narguments: {job.arg}\n"
              f"target: {job.tgt} ({job.tgt_type})\nminions: {', '.join(job.minions)}")
        print(render({mid: r.ret for mid, r in record.returns.items()}, ns.out or "yaml"))
        for minion_id in record.missing:
            print(f"{minion_id}: no return", file=sys.stderr)
        return EXIT_OK
    finally:
        cache.close()


def events(opts: Mapping[str, Any], ns: argparse.Namespace) -> int:
    import fnmatch

    import zmq

    from autopi_proto import codec
    from cloud_master.server import events_address

    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(events_address(opts))
    seen = 0
    try:
        while True:
            tag_raw, body = sock.recv_multipart()
            tag = tag_raw.decode(errors="replace")
            if not fnmatch.fnmatchcase(tag, ns.tag):
                continue
            print(json.dumps({"tag": tag, "data": codec.unpackb(body)}, default=str), flush=True)
            seen += 1
            if ns.count and seen >= ns.count:
                return EXIT_OK
    finally:
        sock.close(0)


def runner(opts: Mapping[str, Any], ns: argparse.Namespace) -> int:
    with MasterClient.from_opts(opts) as client:
        result = client.runner(ns.fun, cli_arguments(ns.args), timeout=ns.timeout)
    # A mapping prints like Salt's runner output; anything else under a "return" heading.
    print(render(result if isinstance(result, dict) and result else {"return": result}, ns.out))
    return EXIT_OK
