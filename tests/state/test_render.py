"""The SLS renderer: shebang pipes, Salt's YAML twists, Jinja context and errors with file+line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autopi_common.sls import RenderError
from autopi_common.sls.jinja import SaltFunctions
from autopi_common.sls.render import render_sls, renderer_pipe, sls_variables
from autopi_common.sls.yamlload import load_yaml

CONTEXT: dict[str, Any] = {"grains": {"id": "car-0001", "os": "Debian"}, "pillar": {"a": 1},
                           "opts": {"id": "car-0001"}, "sls": "x", "saltenv": "base"}


def test_yaml_reads_sls_as_salt_does() -> None:
    data = load_yaml("mode: 0644\nzero: 0\nhex: 0x1F\nwhen: 2024-01-02\nflag: yes\n"
                     "ver: 1.10\nlist: [a, 0755]\n", "x.sls")
    assert data == {"mode": 644, "zero": 0, "hex": 31, "when": "2024-01-02", "flag": True,
                    "ver": 1.1, "list": ["a", 755]}
    assert list(load_yaml("b: 1\na: 2\nc: 3\n", "x.sls")) == ["b", "a", "c"]
    assert load_yaml("", "x.sls") == {} and load_yaml("# only a comment\n", "x.sls") == {}


@pytest.mark.parametrize(("text", "line", "message"), [
    ("a: 1\nb: 2\na: 3\n", 3, "found conflicting ID 'a'"),
    ("a:\n\t- b\n", 2, "Illegal tab character"),
    ("a: [1, 2\nb: 3\n", 2, "YAML error"),
])
def test_yaml_errors_name_file_and_line(text: str, line: int, message: str) -> None:
    with pytest.raises(RenderError) as caught:
        load_yaml(text, "salt://web/init.sls")
    assert caught.value.source == "salt://web/init.sls" and caught.value.line == line
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"salt://web/init.sls, line {line}: ")


def test_shebang_pipes() -> None:
    assert renderer_pipe("a: 1") == ["jinja", "yaml"]
    assert renderer_pipe("#!yaml\na: 1") == ["yaml"]
    assert renderer_pipe("#!jinja | json\n{}") == ["jinja", "json"]
    assert renderer_pipe("#!/bin/sh\necho") == ["jinja", "yaml"]  # an interpreter, not a pipe
    with pytest.raises(RenderError, match="renderer 'py' is not supported"):
        renderer_pipe("#!py\ndef run(): pass")
    with pytest.raises(RenderError, match="must come last"):
        renderer_pipe("#!yaml|jinja\n")


def test_yaml_only_leaves_jinja_alone_and_json_pipe() -> None:
    assert render_sls("#!yaml\nx: '{{ grains.id }}'\n", source="s", context=CONTEXT) == \
        {"x": "{{ grains.id }}"}
    assert render_sls('#!jinja|json\n{"id": "{{ grains.id }}"}\n', source="s",
                      context=CONTEXT) == {"id": "car-0001"}


def test_jinja_sees_grains_pillar_opts_salt_and_sls_variables() -> None:
    functions = SaltFunctions({"grains.get": lambda key, default="": CONTEXT["grains"].get(key,
                                                                                        default)
                               }.__getitem__)
    text = ("id: {{ grains['id'] }}\na: {{ pillar.a }}\nopt: {{ opts.id }}\n"
            "os: {{ salt['grains.get']('os') }}\nos2: {{ salt.grains.get('os') }}\n"
            "env: {{ saltenv }}\nsls: {{ sls }}\ndir: {{ tpldir }}\n"
            "{% do pillar.update({'b': 2}) %}b: {{ pillar.b }}\n")
    context = {**CONTEXT, "salt": functions, "sls": "web.app",
               **sls_variables("web.app", "web/app/init.sls")}
    assert render_sls(text, source="s", context=context) == {
        "id": "car-0001", "a": 1, "opt": "car-0001", "os": "Debian", "os2": "Debian",
        "env": "base", "sls": "web.app", "dir": "web/app", "b": 2}


def test_jinja_import_and_relative_include() -> None:
    files = {"web/map.jinja": "{% set port = 8080 %}",
             "web/part.sls": "included: {{ grains.id }}\n"}
    text = ("{% from './map.jinja' import port %}port: {{ port }}\n"
            "{% include 'web/part.sls' %}")
    assert render_sls(text, source="web/init.sls", context=CONTEXT, fetch=files.get) == \
        {"port": 8080, "included": "car-0001"}


@pytest.mark.parametrize(("text", "line", "message"), [
    ("a: 1\nb: {{ nope.x }}\n", 2, "Jinja variable 'nope' is undefined"),
    ("a: 1\n\n{% if %}\n", 3, "Jinja syntax error"),
    ("a: {{ salt['boom']() }}\n", 1, "Problem running salt function in Jinja template: "
                                     "ZeroDivisionError"),
    ("{% include 'missing.sls' %}\n", 1, "Jinja template not found: missing.sls"),
])
def test_jinja_errors_name_file_and_line(text: str, line: int, message: str) -> None:
    context = {**CONTEXT, "salt": SaltFunctions({"boom": lambda: 1 / 0}.__getitem__)}
    with pytest.raises(RenderError) as caught:
        render_sls(text, source="salt://bad.sls", context=context, fetch={}.get)
    assert (caught.value.source, caught.value.line) == ("salt://bad.sls", line)
    assert message in str(caught.value)


def test_error_inside_an_imported_template_names_that_template() -> None:
    files = {"lib.jinja": "{% macro m() %}\n{{ missing_var }}\n{% endmacro %}"}
    with pytest.raises(RenderError) as caught:
        render_sls("{% from 'lib.jinja' import m %}x: {{ m() }}\n", source="salt://a.sls",
                   context=CONTEXT, fetch=files.get)
    assert (caught.value.source, caught.value.line) == ("lib.jinja", 2)


def test_sandbox_refuses_python_internals() -> None:
    with pytest.raises(RenderError, match="Jinja error"):
        render_sls("x: {{ ''.__class__.__mro__ }}\n", source="s", context=CONTEXT)


def test_render_state_error_reported_with_file_and_line(tmp_path: Path) -> None:
    from autopi_agent.fileclient import LocalFileClient
    from autopi_agent.state.highstate import Highstate, RenderInputs

    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "init.sls").write_text("ok:\n  test.nop\nbad: {{ oops }}\n")
    renderer = Highstate(LocalFileClient({"base": [tmp_path]}), RenderInputs("m", {}, {}))
    high, errors = renderer.render_highstate({"base": ["web", "absent"]})
    assert high == {}
    assert errors == [
        "Rendering SLS 'base:web' failed: salt://web/init.sls, line 3: Jinja variable "
        "'oops' is undefined\n     1| ok:\n     2|   test.nop\n>    3| bad: {{ oops }}",
        "No matching sls found for 'absent' in env 'base'"]
