"""The state execution functions: dry runs, idempotence, retcodes, one run at a time, safety."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from autopi_agent.modules import state as state_mod
from tests.state.conftest import MakeContext
from tests.state.test_service_pkg import by_id, write_tree


def tree(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    return write_tree(tmp_path / "srv", {
        "top.sls": "base:\n  '*':\n    - site\n",
        "site.sls": f"""
{out}:
  file.directory:
    - makedirs: True
{out}/app.conf:
  file.managed:
    - contents: "rate: {{{{ pillar.get('rate', 5) }}}}"
    - require:
      - file: {out}
{out}/current:
  file.symlink:
    - target: {out}/app.conf
stamp:
  cmd.run:
    - name: echo ran >> {out}/runs.log
    - creates: {out}/runs.log
reload_app:
  cmd.wait:
    - name: echo reloaded >> {out}/reloads.log
    - watch:
      - file: {out}/app.conf
""".replace("{{{{", "{{").replace("}}}}", "}}")})


def test_dry_run_then_apply_then_nothing_to_do(tmp_path: Path, make_ctx: MakeContext) -> None:
    srv, out = tree(tmp_path), tmp_path / "out"
    dry = state_mod.apply_(make_ctx([srv]), test=True)
    assert dry.retcode == 0, dry.ret
    assert not out.exists()
    assert {r["result"] for r in dry.ret.values()} == {None}
    applied = state_mod.apply_(make_ctx([srv]))
    assert applied.retcode == 0, applied.ret
    assert (out / "app.conf").read_text() == "rate: 5\n"
    assert (out / "runs.log").read_text() == "ran\n"
    assert (out / "reloads.log").read_text() == "reloaded\n"
    again = state_mod.apply_(make_ctx([srv]))
    assert again.retcode == 0
    assert [r["__id__"] for r in again.ret.values() if r["changes"]] == []
    assert (out / "runs.log").read_text() == "ran\n"
    assert (out / "reloads.log").read_text() == "reloaded\n"
    dry_again = state_mod.apply_(make_ctx([srv]), test="True")
    assert all(r["result"] is True and not r["changes"] for r in dry_again.ret.values())


def test_no_top_match_and_unknown_sls(tmp_path: Path, make_ctx: MakeContext) -> None:
    srv = write_tree(tmp_path / "srv", {"top.sls": "base:\n  'other-*':\n    - x\n"})
    none = state_mod.highstate(make_ctx([srv]))
    assert none.retcode == 2
    assert none.ret["no_|-states_|-states_|-None"]["comment"].startswith("No Top file")
    missing = state_mod.sls(make_ctx([srv]), "nosuch")
    assert (missing.retcode, missing.ret) == (1, ["No matching sls found for 'nosuch' in env 'base'"])


def test_one_state_run_at_a_time(tmp_path: Path, make_ctx: MakeContext) -> None:
    ctx = make_ctx([tree(tmp_path)])
    lock = ctx.services.setdefault("state_lock", threading.Lock())
    with lock:
        refused = state_mod.apply_(ctx)
    assert refused.retcode == 1 and "another state run is in progress" in refused.ret[0]
    assert state_mod.apply_(ctx).retcode == 0


def test_shell_off_fails_cmd_states_and_shell_conditions(tmp_path: Path,
                                                         make_ctx: MakeContext) -> None:
    srv = write_tree(tmp_path / "srv", {"s.sls": f"""
shell:
  cmd.run:
    - name: touch {tmp_path}/touched
guarded:
  test.succeed_with_changes:
    - unless: test -e /
plain:
  test.succeed_with_changes
"""})
    ret = state_mod.sls(make_ctx([srv], cmd_enabled=False), "s")
    results = by_id(ret.ret)
    assert ret.retcode == 2 and not (tmp_path / "touched").exists()
    assert "cmd.run_all is disabled on this agent" in results["shell"]["comment"]
    assert results["guarded"]["result"] is False
    assert results["guarded"]["comment"].startswith("unless condition could not run")
    assert results["plain"]["result"] is True


def test_single_unknown_and_invalid_arguments(tmp_path: Path, make_ctx: MakeContext) -> None:
    ctx = make_ctx([tmp_path])
    assert state_mod.single(ctx, "nodot", "x").ret == ["Invalid function passed"]
    (unknown,) = state_mod.single(ctx, "nope.thing", "x").ret.values()
    assert unknown["comment"] == "Specified state 'nope.thing' was not found\n"
    (missing,) = state_mod.single(ctx, "file.symlink", "/tmp/x").ret.values()
    assert missing["comment"] == "Missing parameter target for state file.symlink\n"


def test_failhard_stops_the_run(tmp_path: Path, make_ctx: MakeContext) -> None:
    srv = write_tree(tmp_path / "srv", {"f.sls": "a:\n  test.fail_without_changes\n"
                                                 "b:\n  test.succeed_with_changes\n"})
    soft = state_mod.sls(make_ctx([srv]), "f")
    assert len(soft.ret) == 2
    hard = state_mod.sls(make_ctx([srv], failhard=True), "f")
    assert list(by_id(hard.ret)) == ["a"] and hard.retcode == 2


def test_onfail_handled_failure_keeps_retcode_zero(tmp_path: Path, make_ctx: MakeContext) -> None:
    srv = write_tree(tmp_path / "srv", {"f.sls": """
flaky:
  test.fail_without_changes
recover:
  test.succeed_with_changes:
    - onfail:
      - test: flaky
"""})
    ret = state_mod.sls(make_ctx([srv]), "f")
    assert by_id(ret.ret)["flaky"]["result"] is False and ret.retcode == 0


def show(ret: Any) -> Any:
    assert ret.retcode == 0, ret.ret
    return ret.ret


def test_show_functions(tmp_path: Path, make_ctx: MakeContext) -> None:
    ctx = make_ctx([tree(tmp_path)])
    assert show(state_mod.show_top(ctx)) == {"base": ["site"]}
    low = show(state_mod.show_lowstate(ctx))
    assert [chunk["__id__"] for chunk in low][-2:] == ["stamp", "reload_app"]
    assert show(state_mod.show_low_sls(ctx, "site")) == low
    high = show(state_mod.show_sls(ctx, "site"))
    assert high["stamp"]["cmd"] == [{"name": f"echo ran >> {tmp_path}/out/runs.log"},
                                    {"creates": f"{tmp_path}/out/runs.log"}, "run",
                                    {"order": 10003}]
    assert show(state_mod.show_highstate(ctx)) == high


def test_unsupported_requisites_are_refused_not_ignored(tmp_path: Path,
                                                      make_ctx: MakeContext) -> None:
    srv = write_tree(tmp_path / "srv", {"u.sls": """
a:
  test.succeed_with_changes:
    - prereq:
      - test: b
b:
  test.succeed_with_changes:
    - retry: {attempts: 3}
"""})
    ret = state_mod.sls(make_ctx([srv]), "u")
    assert ret.retcode == 1
    assert ret.ret == [
        "The prereq requisite/option ('prereq') in state 'a' in SLS 'u' is not supported by "
        "this agent; use require, watch, onchanges or onfail instead",
        "The retry requisite/option ('retry') in state 'b' in SLS 'u' is not supported by "
        "this agent; use require, watch, onchanges or onfail instead"]
    low = {chunk["__id__"]: chunk for chunk in show(state_mod.show_low_sls(make_ctx([srv]), "u"))}
    assert low["a"]["prereq"] == [{"test": "b"}]  # shown as written; refused only when run
