"""The worker-side part of an image: `ImageSetup.apply()` runs in the worker before every input.

It extracts the packed `add_local_dir`/`add_local_file` zips, runs `run_function` steps once per
node, changes to the `workdir`, and in `MODAL_RAY_PACKAGES=check` mode verifies the packages
instead of installing them.

Invariants: the work is done once per process and run (memoised on the setup's key and the
running input's `host_files` claim; later inputs only `chdir`); `run_function` runs once per node
(a marker file under a node lock shared by the node's worker processes); files and directories go
through `host_files`, so a path that exists and is not modal-ray's is never replaced (an error
says so) and what was created is removed when the run ends. `ImageSetup` is pickled with the
function: the driver and the workers run the same code.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from modal_ray import host_files
from modal_ray.exception import ImageBuildError, InvalidError

_apply_lock = threading.Lock()
# (ImageSetup.key, host_files claim) -> absolute workdir ("" for none), per process
_workdirs: dict[tuple[str, str], str] = {}
# ImageSetup.key -> the folders of its package layer on this node (`layer.py`), per process
_layers: dict[str, list[str]] = {}


def _cache_dir() -> Path:
    uid = getattr(os, "getuid", lambda: 0)()
    return Path(tempfile.gettempdir()) / f"modal-ray-image-{uid}"


def _touch(marker: Path) -> None:
    with contextlib.suppress(OSError):
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()


@contextlib.contextmanager
def _node_lock(path: Path) -> Iterator[None]:
    """An exclusive lock shared by the worker processes of one node (best effort)."""
    try:
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        fh = path.open("a")
    except (ImportError, OSError):
        fh = None
    if fh is None:
        yield
        return
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _extract(dest: str, data: bytes, what: str) -> None:
    """Write a packed zip's files under `dest`, owned by the running input's claim (see
    `host_files`: nothing that exists and is not modal-ray's is replaced)."""
    root = os.path.abspath(os.path.expanduser(dest))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        files = [
            (os.path.join(root, *i.filename.split("/")), zf.read(i), _mode(i))
            for i in zf.infolist()
            if not i.is_dir()
        ]
    try:
        with host_files.ledger() as book:
            assert book is not None
            book.noun = "`remote_path`"
            book.make_dirs(root, what)
            book.write_files(files, what)
    except OSError as exc:
        raise InvalidError(
            f"{what}: cannot write the image's local files to {root!r} on this worker "
            f"({exc.strerror or exc}). Use a `remote_path` that the Ray worker's user can "
            "write (a relative path, or one under /tmp), or create it on every node with write "
            "access."
        ) from exc


def _mode(info: zipfile.ZipInfo) -> int:
    return (info.external_attr >> 16) & 0o7777 or 0o644


def _make_workdir(target: str, what: str) -> str:
    path = os.path.abspath(os.path.expanduser(target))
    try:
        with host_files.ledger() as book:
            assert book is not None
            book.make_dirs(path, what)
    except OSError as exc:
        raise InvalidError(
            f"{what}: cannot create it on this worker ({exc.strerror or exc}); create it on the"
            " cluster's nodes or pick a writable path."
        ) from exc
    return path


def _run_once(name: str, blob: bytes, digest: str) -> None:
    marker = _cache_dir() / f"run-{digest[:32]}"
    if marker.exists():
        return
    with _node_lock(marker.with_suffix(".lock")):
        if marker.exists():
            return
        import cloudpickle

        fn, args, kwargs, env = cloudpickle.loads(blob)
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update({k: v for k, v in env.items() if v is not None})
        try:
            fn(*args, **kwargs)
        except Exception as exc:
            raise ImageBuildError(
                f"`Image.run_function({name})` failed on this worker: {exc!r}"
            ) from exc
        finally:
            for k, old in saved.items():
                if old is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = old
        _touch(marker)


def _check_requirements(requirements: Sequence[str]) -> None:
    """`MODAL_RAY_PACKAGES=check`: every requirement must already be satisfied in this worker."""
    from importlib import metadata

    try:
        from packaging.requirements import InvalidRequirement, Requirement
    except ImportError:  # name-only check
        Requirement = None  # type: ignore[assignment,misc]
    problems: list[str] = []
    for line in requirements:
        if line.startswith("-"):
            continue  # an option line from a requirements file
        spec: Any = None
        if Requirement is not None:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue  # a URL or path: the distribution name is unknown
            if req.marker is not None and not req.marker.evaluate():
                continue
            name, spec = req.name, req.specifier
        else:
            match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
            if not match:
                continue
            name = match.group(0)
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{line} (not installed)")
            continue
        if spec is not None and not spec.contains(version, prereleases=True):
            problems.append(f"{line} (found {version})")
    if problems:
        raise ImageBuildError(
            "MODAL_RAY_PACKAGES=check: the image needs packages that this worker's Python "
            f"({sys.executable}) does not have: {', '.join(problems)}. Install them on the "
            "cluster's nodes, or unset MODAL_RAY_PACKAGES to let Ray install them."
        )


class ImageSetup:
    """Worker-side part of an image; `apply()` runs before every input (cheap after the first).

    Files and directories it writes belong to the running input's run (`host_files`): they
    are removed when the run ends, so the work is done once per process and run.

    `steps` are the image's package steps, kept for the case where they cannot be installed
    beside the worker runtime: `layered(root)` (set by the backend) installs them in a layer of
    their own under `root()` on each node, and `apply()` then returns the undo of putting that
    layer on the input's paths (`layer.py`)."""

    __slots__ = ("key", "ops", "requirements", "root", "steps")

    def __init__(
        self,
        ops: tuple[tuple[str, str, bytes, str, str], ...],
        requirements: tuple[str, ...],
        steps: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (),
        root: Callable[[], str] | None = None,
    ):
        self.ops = ops  # (kind, target, payload, digest, what), in step order
        self.requirements = requirements
        self.steps = steps
        self.root = root  # where this node's package layers live; None: no layer
        h = hashlib.sha256(repr(requirements).encode())
        for kind, target, _, digest, _ in ops:
            h.update(repr((kind, target, digest)).encode())
        if root is not None:
            h.update(repr(("layer", steps)).encode())
        self.key = h.hexdigest()

    def layered(self, root: Callable[[], str]) -> ImageSetup:
        """This setup with its package steps in a layer of their own under `root()`."""
        return ImageSetup(self.ops, self.requirements, self.steps, root)

    def install_layer(self) -> list[str]:
        """This node's layer folders (installed now if missing); [] when not layered."""
        if self.root is None or not self.steps:
            return []
        folders = _layers.get(self.key)
        if folders is None:
            from . import layer

            folders = _layers[self.key] = layer.install(self.steps, self.root())
        return folders

    def apply(self) -> Callable[[], None] | None:
        memo = (self.key, host_files.current_claim())
        workdir = _workdirs.get(memo)
        if workdir is None:
            with _apply_lock:
                workdir = _workdirs.get(memo)
                if workdir is None:
                    workdir = _workdirs[memo] = self._first_apply()
        if workdir:
            os.chdir(workdir)
        if self.root is None or not self.steps:
            return None
        from . import layer

        with _apply_lock:
            folders = self.install_layer()
        return layer.enter(folders)

    def _first_apply(self) -> str:
        if self.requirements:
            _check_requirements(self.requirements)
        workdir = ""
        for kind, target, payload, digest, what in self.ops:
            if kind == "workdir":
                workdir = _make_workdir(target, what)
                os.chdir(workdir)  # later relative remote paths resolve against it
            elif kind == "extract":
                _extract(target, payload, what)
            elif kind == "run":
                _run_once(target, payload, digest)
        return workdir

    def __repr__(self) -> str:
        layer = f", layer={len(self.steps)} steps" if self.root is not None else ""
        ops = [op[0] for op in self.ops]
        return f"ImageSetup({ops}, requirements={len(self.requirements)}{layer})"
