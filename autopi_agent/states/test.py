"""State module ``test``: states that succeed or fail on demand, for trying out requisites."""

from __future__ import annotations

from typing import Any

from autopi_agent.state.context import StateContext, state_return

__all__ = ["fail_with_changes", "fail_without_changes", "mod_watch", "nop",
           "show_notification", "succeed_with_changes", "succeed_without_changes"]

_PRETEND = {"testing": {"old": "Unchanged", "new": "Something pretended to change"}}


def nop(ctx: StateContext, name: str, **kwargs: Any) -> dict[str, Any]:
    """Do nothing and succeed (a placeholder that templates can always render)."""
    return state_return(name, True, "Success!")


def succeed_without_changes(ctx: StateContext, name: str, comment: str = "Success!",
                            **kwargs: Any) -> dict[str, Any]:
    """Succeed with no changes."""
    return state_return(name, True, comment)


def fail_without_changes(ctx: StateContext, name: str, comment: str = "Failure!",
                         **kwargs: Any) -> dict[str, Any]:
    """Fail with no changes (also under ``test=True``)."""
    if ctx.test:
        return state_return(name, False, "If we weren't testing, this would be a failure!")
    return state_return(name, False, comment)


def succeed_with_changes(ctx: StateContext, name: str, comment: str = "Success!",
                         **kwargs: Any) -> dict[str, Any]:
    """Succeed and report a pretend change (``result: None`` under ``test=True``)."""
    if ctx.test:
        return state_return(name, None, "If we weren't testing, this would be successful "
                            "with changes", _PRETEND)
    return state_return(name, True, comment, _PRETEND)


def fail_with_changes(ctx: StateContext, name: str, comment: str = "Failure!",
                      **kwargs: Any) -> dict[str, Any]:
    """Fail and report a pretend change (``result: None`` under ``test=True``)."""
    if ctx.test:
        return state_return(name, None, "If we weren't testing, this would be failed with "
                            "changes", _PRETEND)
    return state_return(name, False, comment, _PRETEND)


def show_notification(ctx: StateContext, name: str, text: str | None = None,
                      **kwargs: Any) -> dict[str, Any]:
    """Succeed with ``text`` as the comment."""
    return state_return(name, True, text or "")


def mod_watch(ctx: StateContext, name: str, sfun: str | None = None,
              **kwargs: Any) -> dict[str, Any]:
    """What a watched change fires: succeed and name the watched states."""
    watched = [f"{req['state']}: {req['__id__']}"
               for req in ctx.low.get("__reqs__", {}).get("watch", [])]
    return {"name": name, "result": kwargs.get("result", True),
            "comment": kwargs.get("comment", "Watch statement fired."),
            "changes": kwargs.get("changes", {"Requisites with changes": watched})}
