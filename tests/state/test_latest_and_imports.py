"""pkg.latest against stub apt-get/apt-cache/dpkg-query, and the Jinja serializer tags where
they go beyond what the golden case (from real Salt) shows."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from autopi_agent.modules import state as state_mod
from autopi_common.sls import RenderError
from autopi_common.sls.jinja import render_jinja
from tests.state.conftest import MakeContext
from tests.state.test_service_pkg import by_id, calls, write_tree

MY_STUBS = Path(__file__).resolve().parent / "stubs"

LATEST_SLS = """
tools:
  pkg.latest:
    - pkgs: [can-utils, gpsd]
one:
  pkg.latest:
    - name: can-utils
"""


@pytest.fixture
def apt(stubs: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PATH", f"{MY_STUBS}{os.pathsep}{os.environ['PATH']}")
    (stubs / "available" / "can-utils").write_text("2023.03-1")
    (stubs / "available" / "gpsd").write_text("3.25-1")
    (stubs / "packages" / "can-utils").write_text("2020.11-1")
    return stubs


def test_pkg_latest_upgrades_installs_then_is_idempotent(tmp_path: Path, apt: Path,
                                                        make_ctx: MakeContext) -> None:
    ctx = make_ctx([write_tree(tmp_path / "srv", {"latest.sls": LATEST_SLS})])
    dry = by_id(state_mod.sls(ctx, "latest", test=True).ret)["tools"]
    assert dry["result"] is None and dry["changes"] == {
        "can-utils": {"old": "2020.11-1", "new": "2023.03-1"}, "gpsd": {"old": "", "new": "3.25-1"}}
    assert dry["comment"] == "The following packages would be installed/upgraded: can-utils, gpsd"
    assert not any("install" in line for line in calls(apt) if line.startswith("apt-get"))
    ret = by_id(state_mod.sls(ctx, "latest").ret)
    assert ret["tools"]["result"] is True and ret["tools"]["changes"] == dry["changes"]
    assert ret["tools"]["comment"] == ("The following packages were successfully "
                                       "installed/upgraded: can-utils, gpsd")
    assert ret["one"]["comment"] == "Package can-utils is already up-to-date"
    again = by_id(state_mod.sls(ctx, "latest").ret)["tools"]
    assert again["changes"] == {} and again["comment"] == \
        "All packages are up-to-date (can-utils, gpsd)."


def test_pkg_latest_of_an_unknown_package_fails(tmp_path: Path, apt: Path,
                                                make_ctx: MakeContext) -> None:
    ctx = make_ctx([write_tree(tmp_path / "srv", {"x.sls": "nope:\n  pkg.latest\n"})])
    (result,) = state_mod.sls(ctx, "x").ret.values()
    assert result["result"] is False and result["comment"] == "No information found for 'nope'."


FILES = {"car/init.sls": "", "car/defaults.yaml": "a: {{ grains['id'] }}\n",
         "car/bad.json": "{not json", "map.json": '{"k": [1, 2]}'}


def render(text: str) -> str:
    return render_jinja(text, source="car/init.sls", context={"grains": {"id": "car-7"}},
                        fetch=FILES.get)


def test_imports_relative_to_the_template_and_from_salt_urls() -> None:
    assert render("{% import_yaml './defaults.yaml' as d %}{{ d.a }}") == "car-7"
    assert render("{% import_json 'salt://map.json' as m %}{{ m.k | sum }}") == "3"
    assert render("{% import_text '../map.json' as t %}{{ t }}") == '{"k": [1, 2]}'
    assert render("{% load_json as j %}[{{ 1 + 1 }}]{% endload %}{{ j[0] * 2 }}") == "4"


def test_a_bad_import_names_the_file() -> None:
    with pytest.raises(RenderError, match="Unable to load json from car/bad.json"):
        render("{% import_json './bad.json' as b %}")
    with pytest.raises(RenderError, match="Jinja template not found: car/missing.yaml"):
        render("{% import_yaml './missing.yaml' as m %}")
