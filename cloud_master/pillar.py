"""Pillar on the master: each minion's pillar rendered from ``pillar_roots`` with its grains.

The result goes only to the minion that asked (the ``_pillar`` reply is encrypted to its
key, S4). Templates see that minion's ``grains``, the pillar so far as ``pillar``,
``opts`` with its ``id``, and a small ``salt`` (``grains.get``, ``grains.item``,
``pillar.get``): no execution module runs on the master. Rendering problems are reported
to the minion under the pillar key ``_errors`` (states then refuse to run) and logged here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from autopi_common.sls.pillar import PillarRenderer
from autopi_common.sls.roots import FileRoots

__all__ = ["PillarCompiler"]

log = structlog.get_logger(__name__)


class PillarCompiler:
    """Compiles pillar for any minion from the master's ``pillar_roots``."""

    def __init__(self, opts: Mapping[str, Any]) -> None:
        self.renderer = PillarRenderer(FileRoots(opts.get("pillar_roots") or {}),
                                       opts={"renderer": "jinja|yaml"})

    def compile(self, minion_id: str, grains: Mapping[str, Any], saltenv: str = "base",
                pillarenv: str | None = None,
                override: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The pillar of ``minion_id`` (``_errors`` lists problems); never raises on bad SLS.

        ``pillarenv`` limits rendering to one pillar environment (``saltenv`` is accepted
        for Salt's call shape and does not select pillar); ``override`` (the request's
        ``pillar_override``) is merged over the result.
        """
        pillar = self.renderer.compile(minion_id, dict(grains or {}), pillarenv=pillarenv,
                                       override=override if isinstance(override, Mapping) else None)
        errors = pillar.get("_errors")
        if errors:
            log.error("pillar.errors", minion=minion_id, count=len(errors), first=str(errors[0])[:500])
        else:
            log.info("pillar.compiled", minion=minion_id, keys=len(pillar))
        return pillar
