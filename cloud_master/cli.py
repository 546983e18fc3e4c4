"""``cloud-master``: run the master, publish jobs, manage minion keys, look at jobs and events."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from autopi_common.cli import ConfigSource, run_verb
from cloud_master import __version__

TARGET_FLAGS = {"-G": "grain", "-L": "list", "-E": "pcre", "-C": "compound", "-P": "grain_pcre"}

EPILOG = """examples:
  cloud-master -c master.yaml serve
  cloud-master run '*' test.ping
  cloud-master run 'car-*' grains.get os --out json
  cloud-master run -G 'os:Debian' sys.list_functions
  cloud-master run car-0001 test.echo 'hello world' --timeout 10
  cloud-master key list            cloud-master key accept car-0001 -y
  cloud-master jobs list           cloud-master jobs show 20261127113000123456
  cloud-master runner manage.status timeout=2
  cloud-master runner fleet.summary 'car-*' --out json
  cloud-master telemetry latest 'car-*'
  cloud-master telemetry query car-0001 RPM SPEED --since 1h
  cloud-master telemetry export 'car-*' --since 2d --format csv -o fleet.csv
  cloud-master telemetry plot car-0001 RPM SPEED --since 1h -o trip.png
"""


MASTER_CONFIG = ConfigSource("master", "CLOUD_MASTER_CONFIG", "/etc/cloud-master/master.yaml")
_config_option = MASTER_CONFIG.adder()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cloud-master", description="The fleet's cloud master (Salt-compatible).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"cloud-master {__version__}")
    _config_option(parser, top=True)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")

    serve = verbs.add_parser("serve", help="run the master daemon (ports 4505/4506)")
    _config_option(serve, top=False)

    run = verbs.add_parser("run", help="run a function on targeted minions",
                           description="Publish FUN to the minions TARGET selects and print "
                           "their returns as they arrive. ARGs are positional values or "
                           "key=value keyword arguments, as with `salt`.")
    _config_option(run, top=False)
    for flag, kind in TARGET_FLAGS.items():
        run.add_argument(flag, dest="tgt_type", action="store_const", const=kind,
                         help=f"TARGET is a {kind} expression")
    run.add_argument("--tgt-type", dest="tgt_type", help="target type (glob, list, grain, "
                     "grain_pcre, pcre, compound)")
    run.add_argument("-t", "--timeout", type=float, help="seconds to wait for returns "
                     "(default: the config's timeout)")
    run.add_argument("--out", default="", choices=("yaml", "nested", "json", "raw", "table",
                                                    "highstate"),
                     help="output format (default: yaml, or highstate for state runs)")
    run.add_argument("--async", dest="is_async", action="store_true",
                     help="print the job id and return without waiting")
    run.add_argument("--return", dest="returner", default="", metavar="RETURNER",
                     help="also send the returns to this returner on the minion")
    run.add_argument("target")
    run.add_argument("fun")
    run.add_argument("args", nargs="*", metavar="ARG")

    key = verbs.add_parser("key", help="list, accept, reject, delete minion keys")
    _config_option(key, top=False)
    key.add_argument("action", choices=("list", "accept", "reject", "delete", "finger"))
    key.add_argument("pattern", nargs="?", default=None, help="minion id or glob")
    key.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    key.add_argument("--include-rejected", action="store_true",
                     help="accept also keys that were rejected")
    key.add_argument("--include-accepted", action="store_true",
                     help="reject also keys that were accepted")
    key.add_argument("--out", default="yaml", choices=("yaml", "json"))

    jobs = verbs.add_parser("jobs", help="past jobs from the job cache")
    _config_option(jobs, top=False)
    jobs.add_argument("action", choices=("list", "show"))
    jobs.add_argument("jid", nargs="?")
    jobs.add_argument("--limit", type=int, default=50)
    jobs.add_argument("--out", default="", choices=("yaml", "nested", "json", "raw", "table"),
                      help="format (default: one line per job for list, yaml for show)")

    runner = verbs.add_parser("runner", help="run a master-side function (manage.status, "
                              "jobs.list, fleet.summary...)",
                              description="Run NAME.FUN in the master daemon. ARGs are "
                              "positional values or key=value keyword arguments.")
    _config_option(runner, top=False)
    runner.add_argument("fun", metavar="NAME.FUN")
    runner.add_argument("args", nargs="*", metavar="ARG")
    runner.add_argument("-t", "--timeout", type=float, default=60.0,
                        help="seconds to wait for the master (default 60)")
    runner.add_argument("--out", default="yaml", choices=("yaml", "nested", "json", "raw"))

    from cloud_master import telemetry_cli

    telemetry_cli.add_parser(verbs, _config_option)

    events = verbs.add_parser("events", help="stream the master's events")
    _config_option(events, top=False)
    events.add_argument("--tag", default="*", help="tag glob, e.g. 'salt/job/*'")
    events.add_argument("--count", type=int, default=0, help="stop after N events")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from cloud_master.config import load_master_config

    def verbs() -> dict[str, Any]:
        from cloud_master import commands, telemetry_cli

        return {"serve": commands.serve, "run": commands.run, "key": commands.key,
                "jobs": commands.jobs, "events": commands.events, "runner": commands.runner,
                "telemetry": telemetry_cli.run}

    return run_verb("cloud-master", build_parser(), argv, MASTER_CONFIG, load_master_config, verbs,
                    (ValueError, ConnectionError, OSError))


def dump(value: Any) -> str:
    return json.dumps(value, indent=4, sort_keys=True, default=str)


if __name__ == "__main__":
    sys.exit(main())
