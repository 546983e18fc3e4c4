"""Runs inside the Salt peer venv: how salt-minion splits a job's wire ``arg`` list.

Reads a JSON list of ``arg`` lists on stdin; writes, for each, ``[args, kwargs]`` as Salt's
``salt.minion.load_args_and_kwargs`` gives them for a function taking ``*args, **kwargs``.
"""

import json
import sys

import salt.minion


def anything(*args, **kwargs):
    return args, kwargs


answers = []
for arg in json.load(sys.stdin):
    args, kwargs = salt.minion.load_args_and_kwargs(anything, arg)
    answers.append([list(args), kwargs])
json.dump(answers, sys.stdout)
