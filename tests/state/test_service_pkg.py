"""service and pkg states against stub systemctl/apt-get/dpkg-query programs on PATH."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autopi_agent.modules import state as state_mod
from tests.state.conftest import MakeContext


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def unit(stubs: Path, name: str, *flags: str) -> Path:
    directory = stubs / "services" / name
    directory.mkdir()
    for flag in flags:
        (directory / flag).touch()
    return directory


def calls(stubs: Path) -> list[str]:
    return (stubs / "calls.log").read_text().splitlines()


def by_id(ret: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {result["__id__"]: result for result in ret.values()}


SERVICE_SLS = """
/CONF/logger.conf:
  file.managed:
    - contents: {{ pillar.get('level', 'info') }}
logger:
  service.running:
    - name: autopi-logger.service
    - enable: True
    - watch:
      - file: /CONF/logger.conf
"""


def service_tree(tmp_path: Path) -> Path:
    conf = tmp_path / "conf"
    conf.mkdir()
    return write_tree(tmp_path / "srv", {"svc.sls": SERVICE_SLS.replace("/CONF", str(conf))})


def test_service_started_enabled_then_idempotent(tmp_path: Path, stubs: Path,
                                                 make_ctx: MakeContext) -> None:
    srv = service_tree(tmp_path)
    directory = unit(stubs, "autopi-logger.service")
    first = state_mod.sls(make_ctx([srv]), "svc")
    assert first.retcode == 0, first.ret
    logger = by_id(first.ret)["logger"]
    assert logger["result"] is True and logger["changes"] == {"autopi-logger.service": True}
    assert (directory / "active").exists() and (directory / "enabled").exists()
    # The watched file changed in the same run but the service had just been started.
    assert (directory / "history").read_text().split() == ["start", "enable"]
    second = state_mod.sls(make_ctx([srv]), "svc")
    assert second.retcode == 0
    assert all(not result["changes"] for result in second.ret.values())
    assert by_id(second.ret)["logger"]["comment"] == (
        "The service autopi-logger.service is already running "
        "Service autopi-logger.service is already enabled")
    assert (directory / "history").read_text().split() == ["start", "enable"]


def test_watch_restarts_running_service_when_file_changes(tmp_path: Path, stubs: Path,
                                                          make_ctx: MakeContext) -> None:
    srv = service_tree(tmp_path)
    directory = unit(stubs, "autopi-logger.service", "active", "enabled")
    (tmp_path / "conf" / "logger.conf").write_text("info\n")
    pillar = write_tree(tmp_path / "pillar", {"top.sls": "base:\n  '*':\n    - p\n",
                                              "p.sls": "level: debug\n"})
    ret = state_mod.sls(make_ctx([srv], [pillar]), "svc").ret
    logger = by_id(ret)["logger"]
    assert logger["comment"] == "Service restarted"
    assert logger["changes"] == {"autopi-logger.service": True}
    assert (directory / "history").read_text().split() == ["restart"]
    assert (tmp_path / "conf" / "logger.conf").read_text() == "debug\n"


def test_service_test_mode_changes_nothing(tmp_path: Path, stubs: Path,
                                           make_ctx: MakeContext) -> None:
    srv = service_tree(tmp_path)
    directory = unit(stubs, "autopi-logger.service")
    ret = state_mod.sls(make_ctx([srv]), "svc", test=True)
    logger = by_id(ret.ret)["logger"]
    assert ret.retcode == 0 and logger["result"] is None
    # The watched file would change, so (as in Salt) mod_watch answers for the service.
    assert logger["comment"] == "Service is set to be started"
    assert not (directory / "active").exists() and not (directory / "history").exists()
    assert not any(line.split()[1] in ("start", "enable", "restart") for line in calls(stubs))
    assert not (tmp_path / "conf" / "logger.conf").exists()


def test_failed_service_skips_dependents_not_independents(tmp_path: Path, stubs: Path,
                                                          make_ctx: MakeContext) -> None:
    srv = write_tree(tmp_path / "srv", {"f.sls": """
broken:
  service.running:
    - name: broken.service
missing:
  service.running:
    - name: nosuch.service
after_broken:
  test.succeed_with_changes:
    - require:
      - service: broken
independent:
  test.succeed_with_changes
"""})
    unit(stubs, "broken.service", "fail-start")
    ret = state_mod.sls(make_ctx([srv]), "f")
    results = by_id(ret.ret)
    assert ret.retcode == 2
    assert results["broken"]["result"] is False
    assert "failed to start" in results["broken"]["comment"]
    assert results["missing"] == {**results["missing"], "result": False,
                                  "comment": "The named service nosuch.service is not available"}
    assert results["after_broken"]["result"] is False
    assert results["after_broken"]["comment"] == "One or more requisite failed: f.broken"
    assert results["independent"]["result"] is True and results["independent"]["changes"]


def test_dead_disabled_enabled(tmp_path: Path, stubs: Path, make_ctx: MakeContext) -> None:
    srv = write_tree(tmp_path / "srv", {"s.sls": """
a.service:
  service.dead:
    - enable: False
b.service:
  service.enabled
c.service:
  service.disabled
"""})
    a = unit(stubs, "a.service", "active", "enabled")
    b = unit(stubs, "b.service")
    c = unit(stubs, "c.service", "enabled")
    ret = state_mod.sls(make_ctx([srv]), "s")
    assert ret.retcode == 0, ret.ret
    assert not (a / "active").exists() and not (a / "enabled").exists()
    assert (b / "enabled").exists() and not (b / "active").exists()
    assert not (c / "enabled").exists()
    assert by_id(ret.ret)["a.service"]["changes"] == {"a.service": False}


PKG_SLS = """
tools:
  pkg.installed:
    - pkgs:
      - can-utils
      - gpsd: '3.22-4'
obsolete:
  pkg.removed:
    - name: old-logger
"""


def test_pkg_installed_and_removed_then_idempotent(tmp_path: Path, stubs: Path,
                                                   make_ctx: MakeContext) -> None:
    srv = write_tree(tmp_path / "srv", {"p.sls": PKG_SLS})
    (stubs / "available" / "can-utils").write_text("2020.11.0-1")
    (stubs / "available" / "gpsd").write_text("3.22-4")
    (stubs / "packages" / "old-logger").write_text("1.0")
    ret = state_mod.sls(make_ctx([srv]), "p")
    results = by_id(ret.ret)
    assert ret.retcode == 0, ret.ret
    assert results["tools"]["changes"] == {"can-utils": {"old": "", "new": "2020.11.0-1"},
                                           "gpsd": {"old": "", "new": "3.22-4"}}
    assert results["obsolete"]["changes"] == {"old-logger": {"old": "1.0", "new": ""}}
    assert (stubs / "packages" / "gpsd").read_text() == "3.22-4"
    assert not (stubs / "packages" / "old-logger").exists()
    again = state_mod.sls(make_ctx([srv]), "p")
    assert again.retcode == 0 and all(not r["changes"] for r in again.ret.values())
    assert by_id(again.ret)["tools"]["comment"] == "All specified packages are already installed"
    assert by_id(again.ret)["obsolete"]["comment"] == "All specified packages are already absent"


def test_pkg_test_mode_and_version_mismatch(tmp_path: Path, stubs: Path,
                                            make_ctx: MakeContext) -> None:
    srv = write_tree(tmp_path / "srv", {"p.sls": PKG_SLS})
    (stubs / "available" / "can-utils").write_text("2020.11.0-1")
    (stubs / "available" / "gpsd").write_text("3.25-1")
    dry = state_mod.sls(make_ctx([srv]), "p", test=True)
    assert by_id(dry.ret)["tools"]["result"] is None
    assert by_id(dry.ret)["tools"]["comment"] == (
        "The following packages would be installed/updated: can-utils, gpsd")
    assert not any(line.startswith("apt-get") for line in calls(stubs))
    real = state_mod.sls(make_ctx([srv]), "p")
    tools = by_id(real.ret)["tools"]
    assert real.retcode == 2 and tools["result"] is False
    assert "failed to install/update" in tools["comment"] and "gpsd" in tools["comment"]
