"""Execution modules (``test``, ``sys``, ``grains``, ``cmd`` ...): one file per Salt module name."""
