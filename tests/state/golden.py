"""Golden state cases: one directory per case (``srv/``, ``pillar/``, ``case.yaml``, expected JSON).

Shared by the golden tests (our agent), the interop test, and ``python -m
tests.state.golden regen CASE`` which rewrites a case's expected files from real
``salt-call --local`` (Salt 3008 venv) so that they stay facts about Salt, not about us.
"""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CASES = Path(__file__).resolve().parent / "cases"
# Keys whose values change from run to run (clock, process ids).
VOLATILE = ("start_time", "duration")


@dataclass(frozen=True)
class Step:
    call: list[str]
    expect: str
    retcode: int = 0


@dataclass(frozen=True)
class Case:
    path: Path
    minion_id: str
    grains: dict[str, Any]
    steps: list[Step]
    source: str  # "salt": expected files come from real Salt; "ours": reviewed by hand
    envs: dict[str, str]  # environment -> directory under the case (base: srv)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def file_roots(self) -> dict[str, list[str]]:
        return {env: [str(self.path / sub)] for env, sub in self.envs.items()}

    @property
    def pillar_roots(self) -> list[str]:
        pillar = self.path / "pillar"
        return [str(pillar)] if pillar.is_dir() else []

    def expected(self, step: Step) -> Any:
        return json.loads((self.path / step.expect).read_text())


def load_case(path: Path) -> Case:
    meta = yaml.safe_load((path / "case.yaml").read_text())
    steps = [Step([str(part) for part in step["call"]], step["expect"], int(step.get("retcode", 0)))
             for step in meta["steps"]]
    return Case(path, str(meta.get("minion_id", "car-0001")), dict(meta.get("grains") or {}),
                steps, str(meta.get("source", "salt")), dict(meta.get("envs") or {"base": "srv"}))


def all_cases() -> Iterator[Case]:
    for path in sorted(CASES.iterdir()):
        if (path / "case.yaml").is_file():
            yield load_case(path)


def normalize(ret: Any) -> Any:
    """A state return without what changes from run to run (times, command pids)."""
    if not isinstance(ret, dict) or not all(isinstance(v, dict) for v in ret.values()):
        return ret
    out = {}
    for tag, result in ret.items():
        result = {k: v for k, v in result.items() if k not in VOLATILE}
        changes = result.get("changes")
        if isinstance(changes, dict) and "pid" in changes:
            result["changes"] = {k: v for k, v in changes.items() if k != "pid"}
        out[tag] = result
    return out


# -- real Salt ----------------------------------------------------------------------------


def salt_call(venv: Path, case: Case, args: Sequence[str], root: Path) -> tuple[int, Any]:
    """Run ``salt-call --local --out json ARGS`` over the case's trees; (exit code, return)."""
    conf = root / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    opts = {"id": case.minion_id, "root_dir": str(root), "pki_dir": str(root / "pki"),
            "cachedir": str(root / "cache"), "sock_dir": str(root / "run"),
            "log_file": str(root / "salt.log"), "file_client": "local",
            "file_roots": case.file_roots, "pillar_roots": {"base": case.pillar_roots},
            "grains": case.grains, "enable_gpu_grains": False, "enable_fqdns_grains": False,
            "user": getpass.getuser(), "log_level": "warning"}
    (conf / "minion").write_text(yaml.safe_dump(opts))
    argv = [str(venv / "bin" / "salt-call"), "-c", str(conf), "--local", "--out", "json", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False,
                          stdin=subprocess.DEVNULL)
    try:
        return done.returncode, json.loads(done.stdout)["local"]
    except (ValueError, KeyError) as err:
        raise RuntimeError(f"salt-call {' '.join(args)} printed no JSON:\n{done.stdout}\n"
                           f"{done.stderr}") from err


def regen(case_name: str, venv: Path) -> None:
    case = load_case(CASES / case_name)
    if case.source != "salt":
        raise SystemExit(f"{case_name}: expected files are reviewed by hand, not regenerated")
    with tempfile.TemporaryDirectory(prefix="sg-") as tmp:
        for step in case.steps:
            _, ret = salt_call(venv, case, step.call, Path(tmp))
            (case.path / step.expect).write_text(json.dumps(normalize(ret), indent=2) + "\n")
            print(f"{case_name}: wrote {step.expect}")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "regen":
        raise SystemExit("usage: python -m tests.state.golden regen CASE")
    from tests.saltvenv import salt_venv  # noqa: E402 - only for the dev tool

    regen(sys.argv[2], salt_venv())
