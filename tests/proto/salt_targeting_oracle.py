"""Runs inside the Salt peer venv: says which targets Salt's own minion matchers select.

Reads a JSON list of {tgt, tgt_type, minion_id, grains, delimiter} on stdin and writes a
JSON list of booleans. A matcher that raises counts as no match, as it does on a minion.
"""

import json
import logging
import sys

import salt.config
import salt.loader

logging.disable(logging.CRITICAL)


def decide(matchers, opts, case):
    opts["id"] = case["minion_id"]
    opts["grains"] = case["grains"]
    kwargs = {"opts": opts, "minion_id": case["minion_id"]}
    if case["tgt_type"] in ("grain", "grain_pcre"):
        kwargs["delimiter"] = case["delimiter"]
    try:
        return bool(matchers[f"{case['tgt_type']}_match.match"](case["tgt"], **kwargs))
    except Exception:  # a raising matcher selects nothing
        return False


def main():
    opts = salt.config.minion_config(None)
    matchers = salt.loader.matchers(opts)
    cases = json.load(sys.stdin)
    json.dump([decide(matchers, opts, case) for case in cases], sys.stdout)


main()
