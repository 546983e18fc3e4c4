"""Target matching: table-driven cases, Salt's documented compound examples, and Salt itself."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from autopi_proto.errors import ProtoError
from autopi_proto.targeting import (
    InvalidTargetError,
    TargetError,
    UnsupportedTargetError,
    matches,
    needs_grains,
    select_ids,
    traverse,
    validate,
)
from tests.saltvenv import salt_venv

ORACLE = Path(__file__).with_name("salt_targeting_oracle.py")

GRAINS: dict[str, Any] = {
    "id": "web1",
    "os": "Debian",
    "os_family": "Debian",
    "kernel": "Linux",
    "osrelease": "12",
    "roles": ["web", "db"],
    "pkg": {"apache": "httpd", "versions": {"nginx": "1.22"}},
    "num_cpus": 4,
    "virtual": True,
    "ipv4": ["127.0.0.1", "10.0.0.5"],
    "ipv6": ["::1", "fd00::5"],
    "planets": "mercury",
    "clusters": [{"name": "a"}, {"name": "b"}],
    "url": "https://example.com:8443/x",
    "empty": {},
    "rpi_model": "Raspberry Pi Zero 2 W Rev 1.0",
}
UBUNTU = {**GRAINS, "os": "Ubuntu", "kernel": "Linux"}
DARWIN = {**GRAINS, "kernel": "Darwin"}

# (target, type, minion id, grains, expected[, delimiter])
CASES: list[tuple[Any, ...]] = [
    # glob: fnmatch on the id, case-sensitive
    ("*", "glob", "web1", GRAINS, True),
    ("web*", "glob", "web1", GRAINS, True),
    ("web?", "glob", "web12", GRAINS, False),
    ("WEB*", "glob", "web1", GRAINS, False),
    ("car-000[1-3]", "glob", "car-0002", GRAINS, True),
    ("car-000[1-3]", "glob", "car-0004", GRAINS, False),
    # pcre: re.match, anchored at the start only
    (r"web\d+", "pcre", "web12", GRAINS, True),
    ("eb1", "pcre", "web1", GRAINS, False),
    ("web", "pcre", "web1", GRAINS, True),
    ("web1$", "pcre", "web12", GRAINS, False),
    ("(", "pcre", "web1", GRAINS, False),
    # list: comma-separated string (no space stripping) or a real list
    ("web1,web2", "list", "web2", GRAINS, True),
    ("web1,web2", "list", "web", GRAINS, False),
    ("web10,web2", "list", "web1", GRAINS, False),
    ("a,web1,b", "list", "web1", GRAINS, True),
    ("web1", "list", "web1", GRAINS, True),
    ("web1, web2", "list", "web2", GRAINS, False),
    (["web1", "web2"], "list", "web1", GRAINS, True),
    (["web1", "web2"], "list", "web3", GRAINS, False),
    # grain: glob on the value, both sides lowercased, nested keys, lists match any element
    ("os:Debian", "grain", "x", GRAINS, True),
    ("os:debian", "grain", "x", GRAINS, True),
    ("os:Deb*", "grain", "x", GRAINS, True),
    ("os:Ubuntu", "grain", "x", GRAINS, False),
    ("roles:db", "grain", "x", GRAINS, True),
    ("roles:w*", "grain", "x", GRAINS, True),
    ("roles:mail", "grain", "x", GRAINS, False),
    ("pkg:apache:httpd", "grain", "x", GRAINS, True),
    ("pkg:apache", "grain", "x", GRAINS, True),
    ("pkg:versions:nginx:1.22", "grain", "x", GRAINS, True),
    ("pkg:versions:nginx:1.2", "grain", "x", GRAINS, False),
    ("num_cpus:4", "grain", "x", GRAINS, True),
    ("virtual:true", "grain", "x", GRAINS, True),
    ("clusters:name:b", "grain", "x", GRAINS, True),
    ("clusters:name:c", "grain", "x", GRAINS, False),
    ("url:https://example.com:8443/x", "grain", "x", GRAINS, True),
    ("rpi_model:Raspberry Pi Zero 2*", "grain", "x", GRAINS, True),
    ("*:Debian", "grain", "x", GRAINS, True),
    ("*:Solaris", "grain", "x", GRAINS, False),
    ("os", "grain", "x", GRAINS, False),
    ("missing:x", "grain", "x", GRAINS, False),
    ("empty:x", "grain", "x", GRAINS, False),
    ("os|Debian", "grain", "x", GRAINS, True, "|"),
    ("os:Debian", "grain", "x", GRAINS, False, "|"),
    # grain_pcre: re.match on the lowercased value
    ("os:(Debian|Ubuntu)", "grain_pcre", "x", GRAINS, True),
    ("os:deb", "grain_pcre", "x", GRAINS, True),
    ("os:ian", "grain_pcre", "x", GRAINS, False),
    ("roles:^d", "grain_pcre", "x", GRAINS, True),
    ("num_cpus:[0-9]+$", "grain_pcre", "x", GRAINS, True),
    ("os:(", "grain_pcre", "x", GRAINS, False),
    # ipcidr: addresses from the ipv4/ipv6 grains
    ("10.0.0.0/8", "ipcidr", "x", GRAINS, True),
    ("10.0.0.5", "ipcidr", "x", GRAINS, True),
    ("192.168.0.0/16", "ipcidr", "x", GRAINS, False),
    ("fd00::/8", "ipcidr", "x", GRAINS, True),
    ("not-an-ip", "ipcidr", "x", GRAINS, False),
    # compound: Salt's documented examples
    ("webserv* and G@os:Debian or E@web-dc1-srv.*", "compound", "webserv1", GRAINS, True),
    ("webserv* and G@os:Debian or E@web-dc1-srv.*", "compound", "webserv1", UBUNTU, False),
    ("webserv* and G@os:Debian or E@web-dc1-srv.*", "compound", "web-dc1-srv3", UBUNTU, True),
    ("G@os:Debian and webser* or E@db.*", "compound", "db7", UBUNTU, True),
    ("P@os:(RedHat|Fedora|CentOS)", "compound", "x", GRAINS, False),
    ("P@os:(Debian|Ubuntu)", "compound", "x", UBUNTU, True),
    (r"E@web\d+\.(dev|qa|prod)\.loc", "compound", "web12.qa.loc", GRAINS, True),
    (r"E@web\d+\.(dev|qa|prod)\.loc", "compound", "web12.test.loc", GRAINS, False),
    ("L@minion1.example.com,minion3.domain.com or bl*.domain.com", "compound",
     "minion3.domain.com", GRAINS, True),
    ("L@minion1.example.com,minion3.domain.com or bl*.domain.com", "compound",
     "bl4.domain.com", GRAINS, True),
    ("L@minion1.example.com,minion3.domain.com or bl*.domain.com", "compound",
     "minion2.example.com", GRAINS, False),
    ("not web-dc1-srv", "compound", "web-dc1-srv", GRAINS, False),
    ("not web-dc1-srv", "compound", "web-dc1-srv2", GRAINS, True),
    ("* and not G@kernel:Darwin", "compound", "mac1", DARWIN, False),
    ("* and not G@kernel:Darwin", "compound", "pi1", GRAINS, True),
    ("* and not web-dc1-srv", "compound", "web-dc1-srv", GRAINS, False),
    ("( ms-1 or G@id:ms-3 ) and G@id:ms-3", "compound", "ms-3", {"id": "ms-3"}, True),
    ("( ms-1 or G@id:ms-3 ) and G@id:ms-3", "compound", "ms-1", {"id": "ms-1"}, False),
    ("G%@planets%merc*", "compound", "x", GRAINS, True),
    ("S@10.0.0.0/24 and G@os:Debian", "compound", "x", GRAINS, True),
    ("S@192.168.1.0/24 or S@192.168.1.100", "compound", "x", GRAINS, False),
    # compound: precedence, implicit 'and not', grouping, lists of words
    ("web1 or web2 and G@os:Ubuntu", "compound", "web1", GRAINS, True),
    ("( web1 or web2 ) and G@os:Ubuntu", "compound", "web1", GRAINS, False),
    ("web* not web2", "compound", "web1", GRAINS, True),
    ("web* not web2", "compound", "web2", GRAINS, False),
    ("not ( web1 or web2 )", "compound", "web3", GRAINS, True),
    ("G@os:Debian and not ( G@roles:mail or L@web2,web3 )", "compound", "web1", GRAINS, True),
    ("G@os", "compound", "web1", GRAINS, False),
    ("G@os or web1", "compound", "web1", GRAINS, True),
    (["web*", "and", "G@os:Debian"], "compound", "web1", GRAINS, True),
    # compound: malformed
    ("and web1", "compound", "web1", GRAINS, False),
    ("( web1", "compound", "web1", GRAINS, False),
    ("web1 )", "compound", "web1", GRAINS, False),
    ("web1 web1", "compound", "web1", GRAINS, False),
    ("web1 and", "compound", "web1", GRAINS, False),
    ("( and web1 )", "compound", "web1", GRAINS, False),
    ("not not web1", "compound", "web1", GRAINS, False),
    ("", "compound", "web1", GRAINS, False),
    ("E@( or web1", "compound", "web1", GRAINS, False),
]
# Cases where we differ from Salt on purpose: targets we refuse rather than evaluate.
OURS_ONLY: list[tuple[Any, ...]] = [
    ("I@role:web", "compound", "web1", GRAINS, False),
    ("web1 or N@group1", "compound", "web1", GRAINS, False),
    ("J@role:^w", "compound", "web1", GRAINS, False),
    ("R@%foo.bar", "compound", "web1", GRAINS, False),
    ("role:web", "pillar", "web1", GRAINS, False),
    ("web1", "bogus", "web1", GRAINS, False),
    (42, "glob", "web1", GRAINS, False),
]


def _unpack(case: tuple[Any, ...]) -> tuple[Any, str, str, dict[str, Any], bool, str]:
    tgt, tgt_type, minion_id, grains, expected = case[:5]
    delimiter = case[5] if len(case) > 5 else ":"
    return tgt, tgt_type, minion_id, grains, expected, delimiter


@pytest.mark.parametrize("case", CASES + OURS_ONLY, ids=lambda c: f"{c[1]}:{c[0]!r}->{c[2]}")
def test_matches(case: tuple[Any, ...]) -> None:
    tgt, tgt_type, minion_id, grains, expected, delimiter = _unpack(case)
    assert matches(tgt, tgt_type, minion_id, grains, delimiter=delimiter) is expected


@pytest.mark.parametrize("tgt, tgt_type, error", [
    ("(", "pcre", InvalidTargetError),
    ("os", "grain", InvalidTargetError),
    ("os:(", "grain_pcre", InvalidTargetError),
    ("not-an-ip", "ipcidr", InvalidTargetError),
    (42, "glob", InvalidTargetError),
    ({"a": 1}, "list", InvalidTargetError),
    ("web1", "bogus", InvalidTargetError),
    ("role:web", "pillar", UnsupportedTargetError),
    ("and web1", "compound", InvalidTargetError),
    ("( web1", "compound", InvalidTargetError),
    ("web1 web2", "compound", InvalidTargetError),
    ("", "compound", InvalidTargetError),
    ("E@( or web1", "compound", InvalidTargetError),
    ("G@os or web1", "compound", InvalidTargetError),
    ("web1 and S@300.1.1.1", "compound", InvalidTargetError),
    ("I@role:web", "compound", UnsupportedTargetError),
    ("web1 or N@group1", "compound", UnsupportedTargetError),
])
def test_validate_names_the_problem(tgt: Any, tgt_type: str, error: type[TargetError]) -> None:
    with pytest.raises(error) as caught:
        validate(tgt, tgt_type)
    assert isinstance(caught.value, ProtoError) and isinstance(caught.value, ValueError)
    assert str(caught.value)


@pytest.mark.parametrize("tgt, tgt_type", [
    ("web*", "glob"), (r"web\d+", "pcre"), ("a,b", "list"), (["a", "b"], "list"),
    ("os:Debian", "grain"), ("os:(a|b)", "grain_pcre"), ("10.0.0.0/8", "ipcidr"),
    ("webserv* and G@os:Debian or E@web-dc1-srv.*", "compound"),
    ("( ms-1 or G@id:ms-3 ) and not G%@planets%merc*", "compound"),
    ("x:a(:b)", "grain_pcre"),
])
def test_validate_accepts_good_targets(tgt: Any, tgt_type: str) -> None:
    validate(tgt, tgt_type)  # raises if the target were bad


def test_grain_delimiter_is_checked_by_validate() -> None:
    validate("os|Debian", "grain", delimiter="|")
    with pytest.raises(InvalidTargetError, match="separated by"):
        validate("os:Debian", "grain", delimiter="|")


IDS = ["car-0001", "car-0002", "car-0010", "web1", "db1"]


@pytest.mark.parametrize("tgt, tgt_type, expected", [
    ("car-*", "glob", ["car-0001", "car-0002", "car-0010"]),
    ("car-000[12]", "glob", ["car-0001", "car-0002"]),
    (r"car-\d+1$", "pcre", ["car-0001"]),
    (r"car-\d+1", "pcre", ["car-0001", "car-0010"]),  # re.match: only the start is anchored
    ("db1,web1,ghost", "list", ["web1", "db1"]),
    (["car-0010"], "list", ["car-0010"]),
    ("car-* and not car-0002", "compound", ["car-0001", "car-0010"]),
    ("L@web1,db1 or E@car-001.*", "compound", ["car-0010", "web1", "db1"]),
    ("nothing*", "glob", []),
])
def test_select_ids(tgt: Any, tgt_type: str, expected: list[str]) -> None:
    assert select_ids(tgt, tgt_type, IDS) == expected


@pytest.mark.parametrize("tgt, tgt_type, error", [
    ("os:Debian", "grain", UnsupportedTargetError),
    ("car-* and G@os:Debian", "compound", UnsupportedTargetError),
    ("10.0.0.0/8", "ipcidr", UnsupportedTargetError),
    ("(", "pcre", InvalidTargetError),
])
def test_select_ids_refuses_what_ids_cannot_decide(tgt: str, tgt_type: str,
                                                   error: type[TargetError]) -> None:
    with pytest.raises(error):
        select_ids(tgt, tgt_type, IDS)


@pytest.mark.parametrize("tgt, tgt_type, expected", [
    ("web*", "glob", False), ("web1", "pcre", False), ("a,b", "list", False),
    ("os:Debian", "grain", True), ("os:D", "grain_pcre", True), ("10.0.0.0/8", "ipcidr", True),
    ("web* and L@a,b or E@x", "compound", False), ("web* and G@os:Debian", "compound", True),
    ("P@os:D", "compound", True), ("S@10.0.0.0/8", "compound", True),
    ("G|@os|Debian", "compound", True),
])
def test_needs_grains(tgt: str, tgt_type: str, expected: bool) -> None:
    assert needs_grains(tgt, tgt_type) is expected


@pytest.mark.parametrize("key, expected", [
    ("os", "Debian"),
    ("pkg:versions:nginx", "1.22"),
    ("roles:1", "db"),
    ("roles:-1", "db"),
    ("roles:5", "missing"),
    ("clusters:name", "a"),
    ("os:0", "missing"),
    ("pkg:nope", "missing"),
    ("ints:3", "three"),
    ("flags:true", "yes"),
])
def test_traverse(key: str, expected: Any) -> None:
    data = {**GRAINS, "ints": {3: "three"}, "flags": {True: "yes"}}
    assert traverse(data, key, "missing") == expected


def test_traverse_with_another_delimiter() -> None:
    assert traverse({"a:b": {"c": 1}}, "a:b|c", None, "|") == 1


@pytest.mark.salt
def test_same_decisions_as_salt_minion_matchers() -> None:
    """Every table case above, decided by Salt 3008's own matchers in the peer venv."""
    python = salt_venv() / "bin" / "python"
    cases = []
    for case in CASES:
        tgt, tgt_type, minion_id, grains, _, delimiter = _unpack(case)
        cases.append({"tgt": tgt, "tgt_type": tgt_type, "minion_id": minion_id,
                      "grains": grains, "delimiter": delimiter})
    proc = subprocess.run([str(python), str(ORACLE)], input=json.dumps(cases),
                          capture_output=True, text=True, timeout=90, check=True)
    salt_says = json.loads(proc.stdout)
    ours = [matches(c["tgt"], c["tgt_type"], c["minion_id"], c["grains"],
                    delimiter=c["delimiter"]) for c in cases]
    differ = [(c["tgt"], c["tgt_type"], c["minion_id"], s) for c, s, o
              in zip(cases, salt_says, ours, strict=True) if s != o]
    assert differ == []
    assert salt_says == [_unpack(case)[4] for case in CASES]
