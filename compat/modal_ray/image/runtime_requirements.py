"""The worker runtime's own requirements, installed together with every image's packages.

Ray installs an image's packages into a copy of the workers' environment (one virtualenv per
distinct package list), and the Ray worker, Serve's replica and modal-ray's runtime then run from
that copy. So a package the image installs must never replace one of theirs with a version they
do not accept: `streamlit~=1.35` wants `protobuf<5`, while Ray's `grpcio-reflection` and
`opentelemetry-proto` need a newer protobuf, and a worker whose protobuf was downgraded cannot
import Ray at all.

`runtime_requirements()` walks the installed requirement closure of modal-ray and of Ray with
the extras that the function's worker runs (`ray[default]` for a task; `ray[default,serve]` for
a container pool, which runs in a Serve replica) and returns one requirement line per
distribution that combines every version range its requirers declare (`protobuf<8,>=7.35.1`),
plus `ray==<installed>`. (A task's image may so pin e.g. `fastapi==0.115.4`, which Ray Serve
2.60 refuses: that worker does not run Serve.) The image's
package list gets these lines appended, so pip or uv resolves the image's packages together with
them: a compatible request installs as before (the runtime's packages are installed already and
stay as they are, or move within the ranges the runtime accepts, as `numpy<2` does), and a
conflicting one fails the install with the resolver naming both sides, which surfaces as
`ImageBuildError` (see `RUNTIME_NOTE`). The one exception is a runtime distribution that the
image names itself with a range that cannot meet the runtime's (`fastapi==0.116.0` against Ray
Serve's `fastapi>=0.133.0`): the user pinned it on purpose, so `for_image()` leaves that line
out and the image warns, naming the range the worker was declared to need.

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
# metadata, through Ray itself). Ray is walked with the extras the worker kind runs: a task's
# worker is Ray's core worker (with `ray[default]`'s metrics libraries, which it imports); a
# container's replica is also Ray Serve's (FastAPI, Starlette, uvicorn, gRPC...).
_ROOT = "modal-ray"
_TASK_EXTRAS = frozenset({"default"})
_SERVE_EXTRAS = frozenset({"default", "serve"})
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


def _closure(ray_extras: frozenset[str]) -> tuple[dict[str, Version], dict[str, SpecifierSet]]:
    """(installed versions, combined declared ranges), by canonical distribution name."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version

    versions: dict[str, Version] = {}
    ranges: dict[str, SpecifierSet] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    stack = [(_ROOT, frozenset[str]()), ("ray", ray_extras)]
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
            if req.specifier:
                ranges[dep] = ranges.get(dep, SpecifierSet()) & req.specifier
            extras_wanted = ray_extras if dep == "ray" else frozenset(req.extras)
            stack.append((req.name, extras_wanted))
    return versions, ranges


@functools.cache
def runtime_requirements(serve: bool = True) -> tuple[str, ...]:
    """Requirement lines that keep the worker runtime's packages at versions it accepts: of a
    container's replica (Ray Serve's too) with `serve`, else of a task's worker."""
    versions, ranges = _closure(_SERVE_EXTRAS if serve else _TASK_EXTRAS)
    lines: list[str] = []
    for name in sorted(versions):
        installed = versions[name]
        if name in _PINNED:
            lines.append(f"{name}=={installed}")
            continue
        spec = ranges.get(name)
        if spec is None:
            continue
        if spec.contains(installed, prereleases=True):
            lines.append(f"{name}{_simplify(spec)}")
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


def for_image(packages: Sequence[str], serve: bool = True) -> tuple[list[str], list[str]]:
    """The runtime's lines to install with an image's `packages`, and a warning per line left out.

    An image that names a runtime distribution itself with a range that cannot meet the
    runtime's (`fastapi==0.116.0` where Ray Serve declares `fastapi>=0.133.0`) gets what it asks
    for: the user pinned it on purpose, so that line is left out and a warning says what the
    worker was declared to need. What the image does not name stays in the runtime's ranges."""
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
    for line in runtime_requirements(serve):
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
