"""Golden cases: SLS tree + grains + pillar -> expected low state and results (from real Salt)."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopi_agent.minion.dispatch import Dispatcher
from autopi_proto.args import cli_arguments
from tests.state.conftest import agent_context
from tests.state.golden import Case, all_cases, normalize

CASES = list(all_cases())


def run(case: Case, cachedir: Path, call: list[str]) -> tuple[int, object]:
    import asyncio

    ctx = agent_context(cachedir, case.file_roots, case.pillar_roots, minion_id=case.minion_id,
                        grains=case.grains)
    dispatcher = Dispatcher(ctx)

    async def go() -> object:
        try:
            return await dispatcher.run(call[0], cli_arguments(call[1:]))
        finally:
            await dispatcher.aclose()

    result = asyncio.run(go())
    return result.retcode, result.ret  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_golden_case(case: Case, tmp_path: Path) -> None:
    for number, step in enumerate(case.steps):
        retcode, ret = run(case, tmp_path / f"cache{number}", step.call)
        assert normalize(ret) == case.expected(step), f"{case.name}: {' '.join(step.call)}"
        assert retcode == step.retcode, f"{case.name}: {' '.join(step.call)}"
