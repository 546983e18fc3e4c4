"""``autopi-agent``: run the agent daemon, or call one function locally (like salt-call)."""

from __future__ import annotations

from autopi_agent.lean import defer_stdlib_openssl

defer_stdlib_openssl()  # before asyncio is imported: see autopi_agent/lean.py

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from autopi_agent import __version__
from autopi_common.cli import EXIT_FAIL, EXIT_OK, ConfigSource, run_verb

EPILOG = """examples:
  autopi-agent -c /etc/autopi-agent/agent.yaml serve
  autopi-agent call test.ping
  autopi-agent call grains.get os --out json
  autopi-agent call sys.doc test.echo
  autopi-agent key finger          (this agent's key fingerprint, to compare on the master)
"""


AGENT_CONFIG = ConfigSource("agent", "AUTOPI_AGENT_CONFIG", "/etc/autopi-agent/agent.yaml")
_config_option = AGENT_CONFIG.adder()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autopi-agent", description="The car dongle's agent (a Salt-compatible minion).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"autopi-agent {__version__}")
    _config_option(parser, top=True)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    serve = verbs.add_parser("serve", help="run the agent daemon (connects to the master)")
    _config_option(serve, top=False)
    call = verbs.add_parser("call", help="run one execution function here, without a master",
                            description="Run FUN on this dongle and print its return. ARGs are "
                            "values or key=value keyword arguments, as with salt-call. While "
                            "the agent daemon runs (same config), the call runs in it: it owns "
                            "the OBD adapter, the power MCU and the loggers.")
    _config_option(call, top=False)
    call.add_argument("--local", action="store_true",
                      help="run in this process even when the agent daemon runs")
    call.add_argument("--out", default="yaml",
                      choices=("yaml", "nested", "json", "raw", "highstate"))
    call.add_argument("--file-root", action="append", metavar="DIR",
                      help="serve salt:// files and SLS from DIR (masterless; repeatable)")
    call.add_argument("--pillar-root", action="append", metavar="DIR",
                      help="render pillar from DIR's top.sls (masterless; repeatable)")
    call.add_argument("-t", "--timeout", type=float, help="seconds the function may run")
    call.add_argument("fun")
    call.add_argument("args", nargs="*", metavar="ARG")
    key = verbs.add_parser("key", help="show this agent's key fingerprint (created if missing)")
    _config_option(key, top=False)
    key.add_argument("action", choices=("finger",))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from autopi_agent.config import load_agent_config

    return run_verb("autopi-agent", build_parser(), argv, AGENT_CONFIG, load_agent_config,
                    lambda: {"serve": serve, "call": call, "key": key})


def serve(opts: Mapping[str, Any], ns: argparse.Namespace) -> int:
    import signal

    from autopi_agent.minion.daemon import Agent

    async def run() -> str | None:
        agent = Agent(opts)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.stop)
        await agent.run()
        return agent.restart_reason

    if asyncio.run(run()) is not None:
        # Its own config changed (agent.config): start afresh in this process, so the
        # same PID lives on under systemd and in tests alike.
        from autopi_agent.selfconfig import reexec

        reexec()
    return EXIT_OK


def call(opts: Mapping[str, Any], ns: argparse.Namespace) -> int:
    if not (ns.local or ns.file_root or ns.pillar_root) and opts.get("local_calls", True):
        forwarded = _through_daemon(opts, ns)
        if forwarded is not None:
            return forwarded
    from autopi_agent.grains import core as grains_core
    from autopi_agent.minion.context import AgentContext
    from autopi_agent.minion.dispatch import Dispatcher
    from autopi_proto.args import cli_arguments

    grains = grains_core.collect(str(opts["id"]), extra=opts.get("grains") or {})
    ctx = AgentContext.create(opts, grains=grains)
    file_roots = ns.file_root or opts.get("file_roots")
    if file_roots:
        from autopi_agent.state.sources import local_services

        ctx.services.update(local_services(file_roots, ns.pillar_root or opts.get("pillar_roots")
                                           or []))
    dispatcher = Dispatcher(ctx)

    async def run() -> Any:
        try:
            return await dispatcher.run(ns.fun, cli_arguments(ns.args), timeout=ns.timeout)
        finally:
            await dispatcher.aclose(grace=1.0)

    result = asyncio.run(run())
    out = ns.out
    if out == "yaml" and ctx.loader.outputter(ns.fun) == "highstate":
        out = "highstate"
    print(_render({"local": result.ret}, out))
    return EXIT_OK if result.retcode == 0 else EXIT_FAIL


def _through_daemon(opts: Mapping[str, Any], ns: argparse.Namespace) -> int | None:
    """Run the call in the running daemon; None when no daemon listens (run it here)."""
    from autopi_agent.minion.localcall import DaemonCallError, call_daemon, socket_path
    from autopi_proto.args import cli_arguments

    try:
        wait = (ns.timeout or float(opts.get("job_timeout", 300))) + 30.0
        reply = call_daemon(socket_path(opts), ns.fun, cli_arguments(ns.args), ns.timeout, wait)
    except DaemonCallError as err:
        print(f"autopi-agent call: {err}", file=sys.stderr)
        return EXIT_FAIL
    if reply is None:
        return None
    out = ns.out
    if out == "yaml" and reply.get("outputter") == "highstate":
        out = "highstate"
    print(_render({"local": reply.get("ret")}, out))
    return EXIT_OK if reply.get("retcode") == 0 else EXIT_FAIL


def _render(value: dict[str, Any], fmt: str) -> str:
    if fmt == "highstate":
        from autopi_common.sls.highout import render_highstate

        return render_highstate(value, color=sys.stdout.isatty())
    if fmt == "json":
        return json.dumps(value, indent=4, sort_keys=True, default=str)
    if fmt == "raw":
        return repr(value)
    import yaml

    text: str = yaml.safe_dump(value, default_flow_style=False, sort_keys=True)
    return text.rstrip()


def key(opts: Mapping[str, Any], ns: argparse.Namespace) -> int:
    from autopi_agent.keys import MinionKeys

    keys = MinionKeys.load_or_create(opts["pki_dir"], int(opts["keysize"]))
    print(f"{opts['id']}: {keys.fingerprint()}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
