"""The reactor: events whose tag matches a glob trigger jobs, runners or webhooks.

Configured like Salt's ``reactor`` option, a list of ``{tag glob: [reaction, ...]}``, but
a reaction is an inline mapping rather than an SLS file::

    reactor:
      - "vehicle/*/dtc/new":
          - local: obd.dtc              # a job; tgt defaults to the emitting minion
            tgt: "{{ data.id }}"
          - webhook: https://ops.example/hook
            body: {vehicle: "{{ data.id }}", codes: "{{ data.codes }}"}
      - "salt/minion/*/start":
          - runner: manage.status

Every string is a Jinja2 template (sandboxed) over ``tag`` and ``data``. A failing reaction
is logged and never stops the bus; reactions run as tasks under a concurrency bound, and a
rate limit per tag (and per rule) stops a reaction whose own events trigger it again.

Errors: ReactorError
    ├── ReactorConfigError (ValueError)   the reactor option or the defaults are malformed
    └── ReactionFailed (RuntimeError)     one reaction could not be carried out
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import time
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Protocol

import structlog
import yaml

from cloud_master.events import Event, EventBus
from cloud_master.runners import RunnerContext, RunnerLoader
from cloud_master.runners.presence import minion_of

if TYPE_CHECKING:
    import jinja2

__all__ = ["KINDS", "Reactor", "ReactionFailed", "ReactorConfigError", "ReactorError",
           "ReactorMaster", "Rule", "check_reactor", "default_names", "load_defaults",
           "parse_rules", "rules_from_opts"]

log = structlog.get_logger(__name__)

KINDS: Mapping[str, frozenset[str]] = {
    "local": frozenset({"tgt", "tgt_type", "arg", "kwarg"}),
    "runner": frozenset({"arg", "kwarg"}),
    "webhook": frozenset({"body", "headers"}),
}
WINDOW = 60.0


class ReactorError(Exception):
    """Something the reactor could not do."""


class ReactorConfigError(ReactorError, ValueError):
    """The reactor configuration is malformed; the message names the entry."""


class ReactionFailed(ReactorError, RuntimeError):
    """One reaction could not be carried out."""


class ReactorMaster(RunnerContext, Protocol):
    """What the reactor needs of the master: runners' context, and publishing jobs."""

    async def publish(self, fun: str, arg: list[Any], tgt: str | list[str] = "*",
                      tgt_type: str = "glob", ret: str = "", user: str = "",
                      jid: str | None = None) -> tuple[str, list[str]]: ...


@dataclass(frozen=True, slots=True)
class Rule:
    """Reactions for the events whose tag matches ``tag`` (a glob); ``source`` names the origin."""

    tag: str
    reactions: tuple[Mapping[str, Any], ...]
    source: str


# -- configuration (pure) -----------------------------------------------------------------

def _check_reaction(reaction: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(reaction, Mapping):
        raise ReactorConfigError(f"{where}: a reaction must be a mapping such as "
                                 "{local: obd.dtc}, got {reaction!r}")
    kinds = [kind for kind in KINDS if kind in reaction]
    if len(kinds) != 1:
        raise ReactorConfigError(f"{where}: a reaction needs exactly one of "
                                 f"{', '.join(KINDS)}, got keys {sorted(map(str, reaction))}")
    kind = kinds[0]
    extra = set(map(str, reaction)) - {kind} - KINDS[kind]
    if extra:
        raise ReactorConfigError(f"{where}: unknown keys {sorted(extra)} for a {kind} reaction "
                                 f"(allowed: {', '.join(sorted(KINDS[kind]))})")
    if not isinstance(reaction[kind], str) or not reaction[kind]:
        raise ReactorConfigError(f"{where}: {kind} must be a non-empty string")
    if "arg" in reaction and not isinstance(reaction["arg"], list):
        raise ReactorConfigError(f"{where}: arg must be a list")
    if "kwarg" in reaction and not isinstance(reaction["kwarg"], Mapping):
        raise ReactorConfigError(f"{where}: kwarg must be a mapping")
    return dict(reaction)


def parse_rules(entries: Any, source: str) -> list[Rule]:
    """Rules from a ``reactor`` option value; raises ReactorConfigError naming the bad entry."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ReactorConfigError(f"{source}: expected a list of {{tag glob: [reactions]}}")
    rules: list[Rule] = []
    for index, entry in enumerate(entries):
        where = f"{source}[{index}]"
        if not isinstance(entry, Mapping) or not entry:
            raise ReactorConfigError(f"{where}: expected a mapping of tag glob to reactions")
        for tag, reactions in entry.items():
            if not isinstance(tag, str) or not tag:
                raise ReactorConfigError(f"{where}: a tag glob must be a non-empty string")
            if isinstance(reactions, Mapping):
                reactions = [reactions]
            if not isinstance(reactions, list):
                raise ReactorConfigError(f"{where} '{tag}': expected a list of reactions")
            checked = tuple(_check_reaction(r, f"{where} '{tag}'") for r in reactions)
            rules.append(Rule(tag, checked, source))
    return rules


def check_reactor(value: Any) -> str | None:
    """A config ``check`` for the ``reactor`` option: None when fine, else what is expected."""
    try:
        parse_rules(value, "reactor")
    except ReactorConfigError as err:
        return str(err)
    return None


def load_defaults() -> dict[str, list[Rule]]:
    """The shipped default rules (reactor_defaults.yaml), by name."""
    text = resources.files("cloud_master").joinpath("reactor_defaults.yaml").read_text("utf-8")
    data = yaml.safe_load(text) or {}
    return {str(name): parse_rules(entries, f"default:{name}") for name, entries in data.items()}


def default_names() -> list[str]:
    return sorted(load_defaults())


def rules_from_opts(opts: Mapping[str, Any]) -> list[Rule]:
    """The enabled defaults (option ``reactor_defaults``, default all) then the ``reactor`` rules."""
    defaults = load_defaults()
    wanted = opts.get("reactor_defaults")
    names = sorted(defaults) if wanted is None else list(wanted)
    unknown = [name for name in names if name not in defaults]
    if unknown:
        raise ReactorConfigError(f"reactor_defaults: unknown {unknown} (known: {sorted(defaults)})")
    rules = [rule for name in names for rule in defaults[name]]
    return rules + parse_rules(opts.get("reactor"), "reactor")


# -- templating ---------------------------------------------------------------------------

class _Templates:
    """Sandboxed Jinja2, templates compiled once; undefined names are errors, not blanks."""

    def __init__(self) -> None:
        from jinja2 import StrictUndefined
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        self._env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
        self._cache: dict[str, jinja2.Template] = {}

    def render(self, value: Any, context: Mapping[str, Any]) -> Any:
        if isinstance(value, str):
            if "{" not in value:
                return value
            template = self._cache.get(value)
            if template is None:
                template = self._cache[value] = self._env.from_string(value)
            return template.render(context)
        if isinstance(value, Mapping):
            return {key: self.render(item, context) for key, item in value.items()}
        if isinstance(value, list):
            return [self.render(item, context) for item in value]
        return value


# -- rate limits --------------------------------------------------------------------------

class RateLimiter:
    """At most ``limit`` hits per key in any ``window`` seconds."""

    def __init__(self, limit: int, window: float = WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._hits: dict[str, deque[float]] = {}

    def allow(self, key: str, now: float) -> bool:
        hits = self._hits.setdefault(key, deque())
        while hits and now - hits[0] >= self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return False
        hits.append(now)
        if len(self._hits) > 10000:  # tags carry jids: forget the quiet ones
            self._hits = {k: v for k, v in self._hits.items() if v and now - v[-1] < self.window}
        return True


# -- the reactor --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ReactorStats:
    """Counts since start: reactions done, failed, and events dropped by limits."""

    done: int
    failed: int
    rate_limited: int
    overloaded: int


class Reactor:
    """Follows the event bus and runs the reactions of every rule an event's tag matches."""

    def __init__(self, master: ReactorMaster, rules: Sequence[Rule], *,
                 runners: RunnerLoader | None = None, concurrency: int = 8,
                 rate_limit: int = 30, rule_rate_limit: int = 600,
                 webhook_timeout: float = 10.0) -> None:
        self._master = master
        self._bus: EventBus = master.events
        self.rules = list(rules)
        self._runners = runners or RunnerLoader()
        self._slots = asyncio.Semaphore(concurrency)
        self._max_pending = concurrency * 64
        self._per_tag = RateLimiter(rate_limit)
        self._per_rule = RateLimiter(rule_rate_limit)
        self._webhook_timeout = webhook_timeout
        self._templates: _Templates | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._counts = {"done": 0, "failed": 0, "rate_limited": 0, "overloaded": 0}

    @classmethod
    def from_opts(cls, master: ReactorMaster, runners: RunnerLoader | None = None) -> Reactor:
        opts = master.opts
        return cls(master, rules_from_opts(opts), runners=runners,
                   concurrency=int(opts.get("reactor_concurrency", 8)),
                   rate_limit=int(opts.get("reactor_rate_limit", 30)),
                   rule_rate_limit=int(opts.get("reactor_rule_rate_limit", 600)),
                   webhook_timeout=float(opts.get("reactor_webhook_timeout", 10)))

    @property
    def stats(self) -> ReactorStats:
        return ReactorStats(**self._counts)

    async def run(self) -> None:
        """Follow the bus until cancelled; reactions still running are cancelled with it."""
        sub = self._bus.subscribe("*")
        log.info("reactor.started", rules=len(self.rules))
        try:
            while True:
                event = await sub.get()
                try:
                    self.handle(event)
                except Exception:  # a bug here must not stop the reactor
                    log.exception("reactor.crashed", tag=event.tag)
        finally:
            sub.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def start(self) -> asyncio.Task[None]:
        return asyncio.create_task(self.run(), name="reactor")

    def handle(self, event: Event) -> int:
        """Schedule the reactions ``event`` triggers; returns how many were scheduled."""
        now = time.monotonic()
        scheduled = 0
        for index, rule in enumerate(self.rules):
            if not fnmatch.fnmatchcase(event.tag, rule.tag):
                continue
            if not (self._per_tag.allow(f"{index}|{event.tag}", now)
                    and self._per_rule.allow(str(index), now)):
                self._counts["rate_limited"] += 1
                log.warning("reactor.rate_limited", tag=event.tag, rule=rule.tag)
                continue
            for reaction in rule.reactions:
                if len(self._tasks) >= self._max_pending:
                    self._counts["overloaded"] += 1
                    log.warning("reactor.overloaded", tag=event.tag, pending=len(self._tasks))
                    return scheduled
                task = asyncio.create_task(self._react(event, reaction))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                scheduled += 1
        return scheduled

    async def idle(self) -> None:
        """Wait until no reaction is running (for tests and a clean stop)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _react(self, event: Event, reaction: Mapping[str, Any]) -> None:
        kind = next(k for k in KINDS if k in reaction)
        async with self._slots:
            try:
                if self._templates is None:
                    self._templates = _Templates()
                rendered = self._templates.render(reaction, {"tag": event.tag, "data": event.data})
                detail = await getattr(self, f"_{kind}")(event, rendered)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # logged, counted; the next event is still handled
                self._counts["failed"] += 1
                log.error("reactor.reaction_failed", tag=event.tag, kind=kind,
                          target=str(reaction[kind]) if kind != "webhook" else None,
                          error=f"{type(err).__name__}: {err}")
                return
            self._counts["done"] += 1
            log.info("reactor.reacted", tag=event.tag, kind=kind, **detail)

    async def _local(self, event: Event, reaction: Mapping[str, Any]) -> dict[str, Any]:
        tgt = reaction.get("tgt") or minion_of(event)
        if not tgt:
            raise ReactionFailed(f"no tgt given and event {event.tag} names no minion")
        tgt_type = reaction.get("tgt_type") or ("list" if isinstance(tgt, list) else "glob")
        jid, minions = await self._master.publish(reaction["local"], _wire_args(reaction),
                                                  tgt, tgt_type, user="reactor")
        if not minions:
            log.warning("reactor.no_minions", fun=reaction["local"], tgt=tgt)
        return {"fun": reaction["local"], "jid": jid, "minions": len(minions)}

    async def _runner(self, event: Event, reaction: Mapping[str, Any]) -> dict[str, Any]:
        await self._runners.call(self._master, reaction["runner"], _wire_args(reaction))
        return {"fun": reaction["runner"]}

    async def _webhook(self, event: Event, reaction: Mapping[str, Any]) -> dict[str, Any]:
        url = str(reaction["webhook"])
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ReactionFailed(f"webhook URL must be http(s)://host/..., got scheme {parts.scheme!r}")
        body = reaction.get("body", {"tag": event.tag, "data": event.data})
        payload = body.encode() if isinstance(body, str) else json.dumps(body, default=str).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "cloud-master-reactor"}
        headers.update({str(k): str(v) for k, v in (reaction.get("headers") or {}).items()})
        status = await asyncio.to_thread(_post, url, payload, headers, self._webhook_timeout)
        return {"host": parts.hostname, "status": status}  # the URL may hold a token: not logged


def _wire_args(reaction: Mapping[str, Any]) -> list[Any]:
    args = list(reaction.get("arg") or [])
    if reaction.get("kwarg"):
        args.append({"__kwarg__": True, **reaction["kwarg"]})
    return args


def _post(url: str, payload: bytes, headers: Mapping[str, str], timeout: float) -> int:
    request = urllib.request.Request(url, data=payload, headers=dict(headers), method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:  # raises for 4xx/5xx
        response.read(65536)
        return int(response.status)
