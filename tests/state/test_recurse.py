"""file.recurse: the same tree applied by real ``salt-call --local`` and by our agent gives the
same return (paths made relative), and unit cases for what Salt's output cannot show."""

from __future__ import annotations

import json
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest

from autopi_agent.modules import state as state_mod
from tests.saltvenv import salt_venv
from tests.state.conftest import MakeContext
from tests.state.golden import Case, normalize, salt_call
from tests.state.test_golden import run as run_ours
from tests.state.test_service_pkg import by_id, write_tree

SLS = """
TARGET:
  file.recurse:
    - source: salt://conf
    - clean: True
    - exclude_pat: '*.orig'
    - file_mode: '0640'
    - dir_mode: '0750'
TARGET-tmpl:
  file.recurse:
    - source: salt://tmpl
    - template: jinja
    - include_pat: '*.conf'
"""

FILES = {"conf/a.conf": "a=1\n", "conf/sub/b.conf": "b=2\n", "conf/skip.orig": "old\n",
         "tmpl/car.conf": "id={{ grains['id'] }}\n", "tmpl/notes.txt": "not copied\n"}


def make_case(base: Path, target: Path) -> Case:
    write_tree(base / "srv", {**FILES, "top.sls": "base:\n  '*':\n    - rec\n",
                              "rec.sls": SLS.replace("TARGET", str(target))})
    # A file clean removes, one exclude_pat protects, in a target that exists already.
    write_tree(target, {"stale.conf": "x\n", "keep.orig": "mine\n", "old/c.conf": "c\n"})
    return Case(base, "car-0001", {}, [], "salt", {"base": "srv"})


def relative(ret: Any, target: Path) -> Any:
    """``ret`` with paths under ``target`` shortened, ``removed`` sorted (Salt's is a set's order)."""
    ret = json.loads(json.dumps(normalize(ret)).replace(str(target), "TARGET"))
    for result in ret.values():
        if isinstance(result.get("changes", {}).get("removed"), list):
            result["changes"]["removed"].sort()
    return ret


@pytest.mark.salt
def test_file_recurse_returns_what_salt_returns() -> None:
    venv = salt_venv()
    with tempfile.TemporaryDirectory(prefix="rc-") as tmp:
        base = Path(tmp)
        ours_case = make_case(base / "ours", base / "t-ours")
        salt_case = make_case(base / "salt", base / "t-salt")
        for step in range(2):  # the second run changes nothing, in both
            _, salt = salt_call(venv, salt_case, ["state.apply"], base / f"salt-run{step}")
            _, ours = run_ours(ours_case, base / f"ours-run{step}", ["state.apply"])
            assert relative(ours, base / "t-ours") == relative(salt, base / "t-salt")
        target = base / "t-ours"
        assert sorted(str(p.relative_to(target)) for p in target.rglob("*")) == [
            "a.conf", "keep.orig", "sub", "sub/b.conf"]
        assert stat.S_IMODE((target / "sub").stat().st_mode) == 0o750
        assert stat.S_IMODE((target / "a.conf").stat().st_mode) == 0o640
        assert (base / "t-ours-tmpl" / "car.conf").read_text() == "id=car-0001\n"


def test_file_recurse_dry_run_and_bad_sources(tmp_path: Path, make_ctx: MakeContext) -> None:
    target = tmp_path / "t"
    case = make_case(tmp_path / "case", target)
    ctx = make_ctx(case.file_roots)
    dry = by_id(state_mod.sls(ctx, "rec", test=True).ret)[str(target)]
    assert dry["result"] is None and "#### removed ####" in dry["comment"]
    assert (target / "stale.conf").exists() and not (target / "a.conf").exists()
    write_tree(case.path / "srv", {"bad.sls": f"{target}:\n  file.recurse:\n"
                                              "    - source: salt://nowhere\n"})
    bad = by_id(state_mod.sls(ctx, "bad").ret)[str(target)]
    assert bad == {**bad, "result": False,
                   "comment": "Recurse failed: none of the specified sources were found"}
    write_tree(case.path / "srv", {"mode.sls": f"{target}:\n  file.recurse:\n"
                                               "    - source: salt://conf\n    - mode: 644\n"})
    mode = by_id(state_mod.sls(ctx, "mode").ret)[str(target)]
    assert mode["result"] is False and "'mode' is not allowed" in mode["comment"]
