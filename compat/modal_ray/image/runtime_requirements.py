"""The worker runtime's own requirements, installed together with every image's packages.

Ray installs an image's packages into a copy of the workers' environment (one virtualenv per
distinct package list), and the Ray worker and modal-ray's runtime then run from that copy (for
tasks and Serve replicas alike). So a package the image installs must never replace one of
theirs with a version they do not accept: `streamlit~=1.35` wants `protobuf<5`, while the Google
libraries of `ray[default]` and Serve's gRPC and OpenTelemetry packages need
`protobuf>=7.35.1`, and a worker whose protobuf was downgraded cannot start a Serve replica.

`runtime_requirements()` walks the installed requirement closure of modal-ray and of
`ray[default,serve]` (less the ASGI stack that the user's web app shares, `_USER_WEB_STACK`)
and returns one requirement line per distribution that combines every version range its
requirers declare (`protobuf<8,>=7.35.1`), plus `ray==<installed>`. The image's package list
gets these lines appended, so pip or uv resolves the image's packages together with them: a
compatible request installs as before (the runtime's packages are installed already and stay
as they are, or move within the ranges the runtime accepts), and a conflicting one fails the
install with the resolver naming both sides, which surfaces as `ImageBuildError` (see
`RUNTIME_NOTE`). What the image names itself is its own choice (`for_image()`): a runtime
distribution it pins outside the runtime's range (`pydantic==1.10.13` against
`pydantic<3,>=2.5.0`) is installed as asked, with a warning naming the range the worker was
declared to need, and the ranges that a distribution it replaces declared are dropped (its
replacement brings its own).

Invariants: computed from this process's environment, which is the workers' (the cluster's
nodes run the same environment as the driver), once per process; sorted by name, so the
runtime_env (and Ray's cache key for it) is deterministic; a distribution whose requirers declare
no version range does not appear (a bare name constrains nothing); a line never excludes the
version installed now (where the installed set already breaks a declared range, the line pins
the installed version: installing an image must not change the runtime it runs on).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import metadata
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `packaging` is imported when an image with packages is first used
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

__all__ = ["RUNTIME_NOTE", "for_image", "runtime_requirements"]

# The closure starts at modal-ray (also when it runs from a source tree without installed
# metadata, through Ray itself), with Ray's extras that modal-ray runs. The ASGI stack that Ray
# Serve shares with the user's web app (FastAPI, Starlette, uvicorn) is not walked: the user's app
# runs on it, Modal images pin it themselves (`fastapi[standard]==0.116.0`), and Serve 2.60 serves
# with older releases than it declares; other requirers' ranges on their dependencies still hold.
_ROOT = "modal-ray"
_RAY_EXTRAS = frozenset({"default", "serve"})
_USER_WEB_STACK = frozenset({"fastapi", "starlette", "uvicorn"})
_PINNED = ("ray",)  # kept at exactly the installed version

RUNTIME_NOTE = (
    "modal-ray installs an image's packages together with the versions that Ray and modal-ray "
    "need in the worker (requirement lines such as `protobuf<8,>=7.35.1` follow the image's own "
    "packages in the list); if the installer reports a conflict with one of them, ask the image "
    "for a version of its package that accepts the worker's (often a newer release). If the "
    "cluster's nodes already have the image's packages, set MODAL_RAY_PACKAGES=check to verify "
    "them instead of installing."
)


def _applies(req: Requirement, extras: frozenset[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({"extra": extra}) for extra in (extras or {""}))


def _installed(name: str) -> metadata.Distribution | None:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None


def _simplify(spec: SpecifierSet) -> SpecifierSet:
    """Keep the tightest lower and upper bound (`>=5.0,>=7.35.1` is `>=7.35.1`)."""
    from packaging.specifiers import Specifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    lower: dict[str, Specifier] = {}
    upper: dict[str, Specifier] = {}
    rest: list[Specifier] = []
    for item in spec:
        try:
            version = Version(item.version)
        except InvalidVersion:
            rest.append(item)
            continue
        if item.operator in (">=", ">"):
            best = lower.get(item.operator)
            if best is None or version > Version(best.version):
                lower[item.operator] = item
        elif item.operator in ("<", "<="):
            best = upper.get(item.operator)
            if best is None or version < Version(best.version):
                upper[item.operator] = item
        else:
            rest.append(item)
    return SpecifierSet(",".join(str(s) for s in [*lower.values(), *upper.values(), *rest]))


@functools.cache
def _closure() -> tuple[dict[str, Version], tuple[tuple[str, str, SpecifierSet], ...]]:
    """Installed versions by canonical name, and the declared ranges as (requirer, dependency,
    range) edges."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version

    versions: dict[str, Version] = {}
    edges: list[tuple[str, str, SpecifierSet]] = []
    seen: set[tuple[str, frozenset[str]]] = set()
    stack = [(_ROOT, frozenset[str]()), ("ray", _RAY_EXTRAS)]
    while stack:
        name, extras = stack.pop()
        key = (canonicalize_name(name), extras)
        if key in seen:
            continue
        seen.add(key)
        dist = _installed(name)
        if dist is None:
            continue
        try:
            versions[key[0]] = Version(dist.version)
        except InvalidVersion:
            continue
        for line in dist.requires or []:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            if not _applies(req, extras):
                continue
            dep = canonicalize_name(req.name)
            if dep in _USER_WEB_STACK:
                continue
            if req.specifier:
                edges.append((key[0], dep, req.specifier))
            extras_wanted = _RAY_EXTRAS if dep == "ray" else frozenset(req.extras)
            stack.append((req.name, extras_wanted))
    return versions, tuple(edges)


def runtime_requirements() -> tuple[str, ...]:
    """Requirement lines that keep the worker runtime's packages at versions it accepts."""
    return _lines(frozenset())


@functools.cache
def _lines(replaced: frozenset[str]) -> tuple[str, ...]:
    """The lines, without the ranges that `replaced` distributions declare (the image installs
    other versions of them, which bring their own requirements)."""
    from packaging.specifiers import SpecifierSet

    versions, edges = _closure()
    ranges: dict[str, SpecifierSet] = {}
    for requirer, dep, spec in edges:
        if requirer not in replaced:
            ranges[dep] = ranges.get(dep, SpecifierSet()) & spec
    lines: list[str] = []
    for name in sorted(versions):
        installed = versions[name]
        if name in _PINNED:
            lines.append(f"{name}=={installed}")
            continue
        declared = ranges.get(name)
        if declared is None:
            continue
        if declared.contains(installed, prereleases=True):
            lines.append(f"{name}{_simplify(declared)}")
        else:
            lines.append(f"{name}=={installed}")
    return tuple(lines)


def _may_overlap(a: SpecifierSet, b: SpecifierSet, installed: Version) -> bool:
    """Could some version satisfy both? Tried: the installed version, every version either
    range names, and the next micro release after each (inside open intervals)."""
    from packaging.version import InvalidVersion, Version

    candidates = {installed}
    for item in [*a, *b]:
        try:
            v = Version(item.version.rstrip(".*"))
        except InvalidVersion:
            return True  # a form this check does not read: leave it to the installer
        major, minor, micro = (*v.release, 0, 0)[:3]
        candidates |= {v, Version(f"{major}.{minor}.{micro + 1}")}
    return any(
        a.contains(c, prereleases=True) and b.contains(c, prereleases=True) for c in candidates
    )


def for_image(packages: Sequence[str]) -> tuple[list[str], list[str]]:
    """The runtime's lines to install with an image's `packages`, and a warning per line left out.

    An image that names a runtime distribution itself with a range that cannot meet the
    runtime's (`pydantic==1.10.13` where Ray declares `pydantic<3,>=2.5.0`) gets what it asks
    for: the user pinned it on purpose, so that line is left out and a warning says what the
    worker was declared to need. What the image does not name stays in the runtime's ranges,
    except those that only a distribution the image replaces declared (an image's `pydantic==2.8`
    brings its own pydantic-core, which the installed pydantic pins otherwise)."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    asked: dict[str, list[Requirement]] = {}
    for line in packages:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue  # an option line, a URL or a path
        if req.marker is None or req.marker.evaluate():
            asked.setdefault(canonicalize_name(req.name), []).append(req)
    lines: list[str] = []
    warnings: list[str] = []
    versions, _ = _closure()
    replaced = frozenset(
        name
        for name, reqs in asked.items()
        if name in versions
        and name not in _PINNED
        and any(not r.specifier.contains(versions[name], prereleases=True) for r in reqs)
    )
    for line in _lines(replaced):
        ours = Requirement(line)
        name = canonicalize_name(ours.name)
        mine = [r for r in asked.get(name, []) if r.specifier]
        installed = Version(metadata.version(name))
        clash = [r for r in mine if not _may_overlap(r.specifier, ours.specifier, installed)]
        if not clash:
            lines.append(line)
            continue
        warnings.append(
            f"The image asks for {', '.join(repr(str(r)) for r in clash)}, outside what Ray and "
            f"modal-ray declare for the worker ({ours.specifier}, installed: {installed}); it is "
            "installed as the image asks. If the worker then fails to start, ask the image for "
            f"a {ours.name} in that range."
        )
    return lines, warnings
