"""State module ``pkg``: Debian packages installed (optionally at a version) or removed.

Reads what is installed with ``dpkg-query``, what is available with ``apt-cache policy``
(``pkg.latest``), and changes it with ``apt-get`` (never
interactive; existing configuration files are kept). ``changes`` maps each package to
``{"old": version, "new": version}`` as Salt's pkg states do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from autopi_agent.state.context import StateContext, state_return
from autopi_agent.states._process import ProgramMissing, run_program

__all__ = ["installed", "latest", "mod_watch", "removed"]

_APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "APT_LISTCHANGES_FRONTEND": "none"}
_APT_OPTIONS = ["-q", "-y", "-o", "DPkg::Options::=--force-confold",
                "-o", "DPkg::Options::=--force-confdef"]


def installed(ctx: StateContext, name: str, version: str | None = None,
              pkgs: list[Any] | None = None, refresh: bool = False,
              **kwargs: Any) -> dict[str, Any]:
    """Install ``name`` (or every package of ``pkgs``: names, or ``{name: version}``);
    ``version`` pins one package; ``refresh`` runs ``apt-get update`` first."""
    try:
        wanted = _wanted(name, version, pkgs)
        before = _versions(list(wanted))
    except (ProgramMissing, ValueError) as err:
        return state_return(name, False, str(err))
    todo = [pkg for pkg, ver in wanted.items() if not before.get(pkg) or (ver and before[pkg] != ver)]
    if not todo:
        return state_return(name, True, "All specified packages are already installed")
    if ctx.test:
        return state_return(name, None, "The following packages would be installed/updated: "
                            + ", ".join(todo))
    try:
        if refresh:
            run_program(["apt-get", "-q", "update"], env=_APT_ENV)
        specs = [f"{pkg}={wanted[pkg]}" if wanted[pkg] else pkg for pkg in todo]
        done = run_program(["apt-get", *_APT_OPTIONS, "install", *specs], env=_APT_ENV)
        after = _versions(todo)
    except ProgramMissing as err:
        return state_return(name, False, str(err))
    changes = {pkg: {"old": before.get(pkg, ""), "new": after.get(pkg, "")}
               for pkg in todo if after.get(pkg) and after.get(pkg) != before.get(pkg)}
    failed = [pkg for pkg in todo if not after.get(pkg) or (wanted[pkg] and after[pkg] != wanted[pkg])]
    if failed or not done.ok:
        detail = f"\n{done.stderr or done.stdout}" if not done.ok else ""
        return state_return(name, False, "The following packages failed to install/update: "
                            + ", ".join(failed or todo) + detail, changes)
    return state_return(name, True, "The following packages were installed/updated: "
                        + ", ".join(todo), changes)


def removed(ctx: StateContext, name: str, pkgs: list[Any] | None = None,
            **kwargs: Any) -> dict[str, Any]:
    """Remove ``name`` (or every package of ``pkgs``); configuration files are kept."""
    try:
        names = list(_wanted(name, None, pkgs))
        before = _versions(names)
    except (ProgramMissing, ValueError) as err:
        return state_return(name, False, str(err))
    todo = [pkg for pkg in names if before.get(pkg)]
    if not todo:
        return state_return(name, True, "All specified packages are already absent")
    if ctx.test:
        return state_return(name, None, "The following packages will be removed: "
                            + ", ".join(todo))
    try:
        done = run_program(["apt-get", *_APT_OPTIONS, "remove", *todo], env=_APT_ENV)
        after = _versions(todo)
    except ProgramMissing as err:
        return state_return(name, False, str(err))
    changes = {pkg: {"old": before[pkg], "new": ""} for pkg in todo if not after.get(pkg)}
    left = [pkg for pkg in todo if after.get(pkg)]
    if left or not done.ok:
        return state_return(name, False, "The following packages failed to be removed: "
                            + ", ".join(left or todo), changes)
    return state_return(name, True, "All targeted packages were removed.", changes)


def latest(ctx: StateContext, name: str, pkgs: list[Any] | None = None, refresh: bool = False,
           **kwargs: Any) -> dict[str, Any]:
    """Install ``name`` (or every package of ``pkgs``) at the newest version apt offers,
    upgrading it when an older one is installed; ``refresh`` runs ``apt-get update`` first."""
    try:
        names = list(_wanted(name, None, pkgs))
        if refresh and not ctx.test:
            run_program(["apt-get", "-q", "update"], env=_APT_ENV)
        current, candidates = _versions(names), _candidates(names)
    except (ProgramMissing, ValueError) as err:
        return state_return(name, False, str(err))
    problems = [f"No information found for '{pkg}'." for pkg in names if not candidates.get(pkg)]
    if problems:
        return state_return(name, False, " ".join(problems))
    targets = {pkg: candidates[pkg] for pkg in names if current.get(pkg) != candidates[pkg]}
    if not targets:
        return state_return(name, True, _up_to_date(names))
    up_to_date = sorted(pkg for pkg in names if pkg not in targets)
    if ctx.test:
        comment = "The following packages would be installed/upgraded: " + ", ".join(sorted(targets))
        if up_to_date:
            comment += "\nThe following packages are already up-to-date: " + ", ".join(
                f"{pkg} ({current[pkg]})" for pkg in up_to_date)
        return state_return(name, None, comment, {pkg: {"old": current.get(pkg, ""), "new": ver}
                                                  for pkg, ver in targets.items()})
    return _install_latest(name, targets, current, up_to_date)


def _install_latest(name: str, targets: dict[str, str], current: dict[str, str],
                    up_to_date: list[str]) -> dict[str, Any]:
    try:
        run_program(["apt-get", *_APT_OPTIONS, "install", *targets], env=_APT_ENV)
        after = _versions(list(targets))
    except ProgramMissing as err:
        return state_return(name, False, str(err))
    changes = {pkg: {"old": current.get(pkg, ""), "new": after[pkg]} for pkg in targets
               if after.get(pkg) and after.get(pkg) != current.get(pkg)}
    failed = sorted(pkg for pkg in targets if after.get(pkg) != targets[pkg])
    comments = []
    if failed:
        comments.append("The following packages failed to update: " + ", ".join(failed))
    if len(failed) < len(targets):
        comments.append("The following packages were successfully installed/upgraded: "
                        + ", ".join(sorted(pkg for pkg in targets if pkg not in failed)))
    if up_to_date:
        comments.append("The following packages were already up-to-date: "
                        + ", ".join(up_to_date))
    return state_return(name, not failed, " ".join(comments), changes)


def _up_to_date(names: list[str]) -> str:
    if len(names) > 10:
        return f"All {len(names)} packages are up-to-date."
    if len(names) > 1:
        return f"All packages are up-to-date ({', '.join(sorted(names))})."
    return f"Package {names[0]} is already up-to-date"


def _candidates(packages: Sequence[str]) -> dict[str, str]:
    """The version apt would install of each package (``apt-cache policy``'s Candidate)."""
    done = run_program(["apt-cache", "-q", "policy", *packages], timeout=120.0)
    found: dict[str, str] = {}
    package = None
    for line in done.stdout.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith(":"):
            package = line.rstrip()[:-1].split(":")[0]
        elif package and line.strip().startswith("Candidate:"):
            version = line.split(":", 1)[1].strip()
            if version and version != "(none)":
                found[package] = version
    return found


def mod_watch(ctx: StateContext, name: str, sfun: str | None = None,
              **kwargs: Any) -> dict[str, Any]:
    """A watched state changed: apply the same pkg state again."""
    if sfun == "installed":
        return installed(ctx, name, **kwargs)
    if sfun == "removed":
        return removed(ctx, name, **kwargs)
    if sfun == "latest":
        return latest(ctx, name, **kwargs)
    return state_return(name, False, f"pkg.{sfun} does not work with the watch requisite")


def _wanted(name: str, version: Any, pkgs: Sequence[Any] | None) -> dict[str, str | None]:
    if not pkgs:
        return {name: str(version) if version is not None else None}
    wanted: dict[str, str | None] = {}
    for entry in pkgs:
        if isinstance(entry, dict) and len(entry) == 1:
            pkg, ver = next(iter(entry.items()))
            wanted[str(pkg)] = str(ver) if ver is not None else None
        elif isinstance(entry, str):
            wanted[entry] = None
        else:
            raise ValueError(f"pkgs entry {entry!r} must be a name or a one-key mapping "
                             "of name to version")
    return wanted


def _versions(packages: Sequence[str]) -> dict[str, str]:
    """Installed version of each package (absent ones are left out)."""
    if not packages:
        return {}
    done = run_program(["dpkg-query", "-W", "-f", "${Package} ${Status} ${Version}\\n",
                        *packages], timeout=60.0)
    found: dict[str, str] = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        # "name install ok installed 1.2-3"; anything else (deinstall, config-files) is absent
        if len(parts) >= 5 and parts[1:4] == ["install", "ok", "installed"]:
            found[parts[0].split(":")[0]] = parts[4]
    return found
