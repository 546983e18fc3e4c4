"""Which minions a target selects: Salt's glob, pcre, list, grain, grain_pcre, ipcidr, compound.

The minion side of targeting, as salt-minion decides it (``salt/matchers/*``), as pure
functions: ``matches`` never raises, ``validate`` says why a target is bad. Salt facts kept:
glob and pcre look at the minion id case-sensitively (pcre with ``re.match``, so anchored at
the start only); grain matching is ``grainmatch.subdict_match``; compound words are split
on whitespace (parentheses are words of their own) and a ``not`` that follows an operand
means ``and not``.

TargetError (autopi_proto.errors.ProtoError, ValueError)
 ├── InvalidTargetError        malformed compound, bad regex, grain target without a key
 └── UnsupportedTargetError    a target type or compound engine (I@, N@, R@ ...) we lack
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NoReturn

from autopi_proto.errors import ProtoError
from autopi_proto.grainmatch import DEFAULT_DELIMITER, subdict_match, traverse

__all__ = [
    "DEFAULT_DELIMITER",
    "TARGET_TYPES",
    "InvalidTargetError",
    "TargetError",
    "UnsupportedTargetError",
    "matches",
    "needs_grains",
    "select_ids",
    "traverse",
    "validate",
]

TARGET_TYPES = ("glob", "pcre", "list", "grain", "grain_pcre", "ipcidr", "compound")
_ID_ONLY_TYPES = ("glob", "pcre", "list")
# Salt types we recognise but cannot evaluate on the minion (no pillar, nodegroups expanded
# by the master, no range server).
_UNSUPPORTED_TYPES = ("pillar", "pillar_pcre", "pillar_exact", "compound_pillar_exact",
                      "nodegroup", "range", "data", "resource", "managing_minion")

_OPERATORS = ("and", "or", "not", "(", ")")
# Engine letter, then (for G/P/I/J only) one optional delimiter character, then '@'.
_WORD = re.compile(r"(?:(?P<engine>[GPIJ])(?P<delimiter>.)?@|(?P<other>[LNSERTM])@)"
                   r"(?P<pattern>.+)$")
_ENGINE_TYPES = {"G": "grain", "P": "grain_pcre", "L": "list", "E": "pcre", "S": "ipcidr"}
_ENGINE_NAMES = {"I": "pillar", "J": "pillar_pcre", "N": "nodegroup", "R": "range",
                 "T": "resource", "M": "managing_minion"}
_DATA_ENGINES = ("G", "P", "S", "I", "J")


class TargetError(ProtoError, ValueError):
    """A target expression that cannot be evaluated."""


class InvalidTargetError(TargetError):
    """The target is malformed: a bad regex, an unbalanced compound, a grain without a key."""


class UnsupportedTargetError(TargetError):
    """The target uses a type or compound engine this implementation does not evaluate."""


def matches(tgt: str | Sequence[str], tgt_type: str, minion_id: str,
            grains: Mapping[str, Any], *, delimiter: str = DEFAULT_DELIMITER) -> bool:
    """True when the minion ``minion_id`` with ``grains`` is selected; False for bad targets."""
    try:
        return _evaluate(tgt, tgt_type, minion_id, grains, delimiter)
    except TargetError:
        return False


def validate(tgt: str | Sequence[str], tgt_type: str, *,
             delimiter: str = DEFAULT_DELIMITER) -> None:
    """Raise a TargetError naming what is wrong with the target; return None if it is usable."""
    _check_type(tgt_type)
    if tgt_type == "compound":
        words = _compound_words(tgt)
        _parse_boolean([_placeholder(word) for word in words], tgt)
        return
    _validate_simple(tgt, tgt_type, delimiter)


def needs_grains(tgt: str | Sequence[str], tgt_type: str) -> bool:
    """True when minion ids alone cannot decide the target (it reads grains or other data)."""
    if tgt_type in _ID_ONLY_TYPES:
        return False
    if tgt_type != "compound":
        return True
    return any(_engine(word) in _DATA_ENGINES for word in _compound_words(tgt))


def select_ids(tgt: str | Sequence[str], tgt_type: str, minion_ids: Iterable[str]) -> list[str]:
    """The ids among ``minion_ids`` the target selects, in the given order.

    Only for targets that ids alone decide (glob, pcre, list, and compounds of those);
    raises UnsupportedTargetError for the others (see ``needs_grains``) and
    TargetError subclasses for bad targets.
    """
    validate(tgt, tgt_type)
    if needs_grains(tgt, tgt_type):
        raise UnsupportedTargetError(
            f"target {tgt!r} of type {tgt_type!r} needs each minion's grains, not only its id")
    return [minion_id for minion_id in minion_ids
            if _evaluate(tgt, tgt_type, minion_id, {}, DEFAULT_DELIMITER)]


# --- evaluation -------------------------------------------------------------------------


def _evaluate(tgt: str | Sequence[str], tgt_type: str, minion_id: str,
              grains: Mapping[str, Any], delimiter: str) -> bool:
    _check_type(tgt_type)
    if tgt_type == "compound":
        return _compound(tgt, minion_id, grains)
    return _simple(tgt, tgt_type, minion_id, grains, delimiter)


def _check_type(tgt_type: str) -> None:
    if tgt_type in _UNSUPPORTED_TYPES:
        raise UnsupportedTargetError(f"target type {tgt_type!r} is not supported here; "
                                     f"use one of {', '.join(TARGET_TYPES)}")
    if tgt_type not in TARGET_TYPES:
        raise InvalidTargetError(f"unknown target type {tgt_type!r}; "
                                 f"use one of {', '.join(TARGET_TYPES)}")


def _simple(tgt: Any, tgt_type: str, minion_id: str, grains: Mapping[str, Any],
            delimiter: str) -> bool:
    if tgt_type == "list":
        return _match_list(tgt, minion_id)
    if not isinstance(tgt, str):
        raise InvalidTargetError(f"a {tgt_type} target must be a string, not {tgt!r}")
    if tgt_type == "glob":
        return fnmatch.fnmatchcase(minion_id, tgt)
    if tgt_type == "pcre":
        return _compile(tgt).match(minion_id) is not None
    if tgt_type == "ipcidr":
        return _match_ipcidr(tgt, grains)
    # Like Salt, a grain target without a key is a non-match, not an error that spoils
    # the rest of a compound; validate() reports it.
    return subdict_match(grains, tgt, delimiter, regex=tgt_type == "grain_pcre")


def _validate_simple(tgt: Any, tgt_type: str, delimiter: str) -> None:
    if tgt_type == "list":
        if not isinstance(tgt, (str, list, tuple)):
            raise InvalidTargetError(f"a list target must be a string or a list, not {tgt!r}")
        return
    if not isinstance(tgt, str):
        raise InvalidTargetError(f"a {tgt_type} target must be a string, not {tgt!r}")
    if tgt_type == "pcre":
        _compile(tgt)
    elif tgt_type == "ipcidr":
        _parse_ip(tgt)
    elif tgt_type in ("grain", "grain_pcre"):
        if delimiter not in tgt:
            raise InvalidTargetError(
                f"grain target {tgt!r} needs a key and a value separated by {delimiter!r}")
        if tgt_type == "grain_pcre":
            _check_grain_regex(tgt, delimiter)


def _match_list(tgt: Any, minion_id: str) -> bool:
    if isinstance(tgt, str):
        # Salt's test: the id is one of the comma-separated names, spaces not stripped.
        return (f",{minion_id}," in tgt or tgt.startswith(f"{minion_id},")
                or tgt.endswith(f",{minion_id}") or tgt == minion_id)
    if isinstance(tgt, (list, tuple)):
        return minion_id in tgt
    raise InvalidTargetError(f"a list target must be a string or a list, not {tgt!r}")


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as err:
        raise InvalidTargetError(f"invalid regular expression {pattern!r}: {err}") from err


_IpTarget = (ipaddress.IPv4Address | ipaddress.IPv6Address | ipaddress.IPv4Network
             | ipaddress.IPv6Network)


def _parse_ip(tgt: str) -> _IpTarget:
    for parse in (ipaddress.ip_address, ipaddress.ip_network):
        try:
            return parse(tgt)
        except ValueError:
            continue
    raise InvalidTargetError(f"invalid IP address or CIDR network {tgt!r}")


def _match_ipcidr(tgt: str, grains: Mapping[str, Any]) -> bool:
    try:
        target = _parse_ip(tgt)
    except InvalidTargetError:
        return False  # Salt: a non-match; validate() reports it
    addresses = grains.get(f"ipv{target.version}")
    if not isinstance(addresses, (list, tuple)):
        return False
    if isinstance(target, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(target) in addresses
    for address in addresses:
        try:
            if ipaddress.ip_interface(address).ip in target:
                return True
        except ValueError:
            continue
    return False


def _check_grain_regex(tgt: str, delimiter: str) -> None:
    parts = tgt.split(delimiter)
    candidates = [delimiter.join(parts[cut:]) for cut in range(1, len(parts))]
    errors = []
    for candidate in candidates:
        try:
            re.compile(candidate.lower())
            return
        except re.error as err:
            errors.append(str(err))
    raise InvalidTargetError(f"invalid regular expression in grain target {tgt!r}: {errors[0]}")


# --- compound -----------------------------------------------------------------------------


def _compound_words(tgt: Any) -> list[str]:
    if isinstance(tgt, str):
        return tgt.split()
    if isinstance(tgt, (list, tuple)) and all(isinstance(word, str) for word in tgt):
        return list(tgt)
    raise InvalidTargetError(f"a compound target must be a string or a list of words, "
                             f"not {tgt!r}")


def _engine(word: str) -> str | None:
    match = _WORD.match(word)
    if match is None or word in _OPERATORS:
        return None
    return match.group("engine") or match.group("other")


def _operand(word: str) -> tuple[str, str, str] | None:
    """(target type, pattern, delimiter) of an engine word like ``G@os:Debian``; None: glob."""
    match = _WORD.match(word)
    if match is None:
        return None
    engine = match.group("engine") or match.group("other")
    if engine in _ENGINE_NAMES:
        raise UnsupportedTargetError(
            f"compound engine {engine}@ ({_ENGINE_NAMES[engine]}) in {word!r} is not supported")
    delimiter = match.group("delimiter") or DEFAULT_DELIMITER
    return _ENGINE_TYPES[engine], match.group("pattern"), delimiter


def _word_value(word: str, minion_id: str, grains: Mapping[str, Any]) -> bool:
    operand = _operand(word)
    if operand is None:
        return fnmatch.fnmatchcase(minion_id, word)
    tgt_type, pattern, delimiter = operand
    return _simple(pattern, tgt_type, minion_id, grains, delimiter)


def _placeholder(word: str) -> str | bool:
    """The token for ``word`` when only checking syntax: operators stay, operands validate."""
    if word in _OPERATORS:
        return word
    operand = _operand(word)
    if operand is not None:
        tgt_type, pattern, delimiter = operand
        _validate_simple(pattern, tgt_type, delimiter)
    return True


def _compound(tgt: Any, minion_id: str, grains: Mapping[str, Any]) -> bool:
    tokens: list[str | bool] = []
    for word in _compound_words(tgt):
        tokens.append(word if word in _OPERATORS else _word_value(word, minion_id, grains))
    return _parse_boolean(tokens, tgt)


def _parse_boolean(words: list[str | bool], tgt: Any) -> bool:
    tokens: list[str | bool] = []
    for word in words:
        if word == "not" and tokens and tokens[-1] not in ("and", "or", "("):
            tokens.append("and")  # Salt reads "a not b" as "a and not b"
        tokens.append(word)
    if not tokens:
        raise InvalidTargetError("empty compound target")
    return _BooleanParser(tokens, tgt).parse()


class _BooleanParser:
    """Python's precedence over True/False/and/or/not/parentheses: not > and > or."""

    def __init__(self, tokens: list[str | bool], tgt: Any) -> None:
        self._tokens = tokens
        self._pos = 0
        self._tgt = tgt

    def parse(self) -> bool:
        value = self._or()
        if self._pos != len(self._tokens):
            self._fail(f"unexpected {self._tokens[self._pos]!r}")
        return value

    def _fail(self, what: str) -> NoReturn:
        raise InvalidTargetError(f"malformed compound target {self._tgt!r}: {what}")

    def _peek(self) -> str | bool | None:
        return self._tokens[self._pos] if self._pos < len(self._tokens) else None

    def _binary(self, operator: str, operand: Callable[[], bool]) -> bool:
        value = operand()
        while self._peek() == operator:
            self._pos += 1
            right = operand()
            value = (value and right) if operator == "and" else (value or right)
        return value

    def _or(self) -> bool:
        return self._binary("or", self._and)

    def _and(self) -> bool:
        return self._binary("and", self._not)

    def _not(self) -> bool:
        if self._peek() == "not":
            self._pos += 1
            return not self._not()
        return self._atom()

    def _atom(self) -> bool:
        token = self._peek()
        if isinstance(token, bool):
            self._pos += 1
            return token
        if token == "(":
            self._pos += 1
            value = self._or()
            if self._peek() != ")":
                self._fail("missing ')'")
            self._pos += 1
            return value
        self._fail("expected a target" + (f", got {token!r}" if token is not None else " at end"))
