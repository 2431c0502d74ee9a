"""`modal.Image`, the builder: an immutable chain of recorded steps, compiled for Ray.

An `Image` is an immutable chain of recorded steps (one per builder call); every builder method
returns a new `Image`. There is no image build: the base is always the cluster's own Python
environment, and when a function using the image is prepared the chain is compiled into

- `Image._runtime_env()`: `pip` or `uv` (all package steps merged, in order, followed by the
  worker runtime's own requirements, `runtime_requirements.py`, so that no image package
  replaces a version Ray or modal-ray needs), `env_vars`, `py_modules`. Never secrets.
  Deterministic for a given chain, local files and installed environment.
- `Image._worker_setup()`: a picklable `ImageSetup` (see `setup.py`) carrying the packed local
  files (`packing.py`), the `run_function` steps and the `workdir`.
- `Image._emit_warnings()`: steps that Ray cannot perform (`apt_install`, `run_commands`,
  `from_registry`, ...) warn once per step kind, naming the step; nothing is dropped silently.

Local paths and modules are resolved when the builder is called on the driver (`sources.py`).
Inside a worker (`is_local()` False) the user's module is re-imported, so those look-ups are
skipped there.

Known gaps: `add_local_python_source` ships whole top-level packages through `py_modules` (its
`ignore=` is not applied and warns); one runtime_env holds either `pip` or `uv`, so a chain that
mixes them installs everything with uv; `uv_sync` installs pyproject.toml's dependencies, not
uv.lock's pins (warns).
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
import re
import shlex
import sys
import weakref
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from modal_ray.config import packages_mode
from modal_ray.context import is_local
from modal_ray.exception import InvalidError
from modal_ray.file_pattern_matcher import NON_PYTHON_FILES
from modal_ray.synchronizer import dual, dual_static
from modal_ray.warn import deprecation, warn_once

from .packing import _ignore_key, _matcher, _pack_dir, _zip
from .runtime_requirements import for_image
from .setup import ImageSetup
from .sources import _module_path, _pyproject_dependencies, _read_requirements

__all__ = ["AUTO_DOCKERIGNORE", "Image", "default_image"]

_PIP_DEFAULTS = ("--disable-pip-version-check", "--no-cache-dir")  # Ray's own defaults
_UV_DEFAULTS = ("--no-cache",)
_NODES = "the cluster's nodes"
_ELSEWHERE = f"functions run in the cluster's own Python environment; run {_NODES} from that image"
_REASONS = {
    "apt_install": f"the packages must already be installed on {_NODES}",
    "run_commands": f"run the commands on {_NODES} beforehand (or bake them into their image)",
    "from_registry": _ELSEWHERE,
    "from_aws_ecr": _ELSEWHERE,
    "from_gcp_artifact_registry": _ELSEWHERE,
    "from_dockerfile": _ELSEWHERE,
    "from_scratch": "functions run in the cluster's own Python environment",
    "from_name": "published images do not exist here; the cluster's environment is used",
    "dockerfile_commands": f"apply the Dockerfile commands to {_NODES}' image",
    "micromamba_install": f"the conda packages must already be installed on {_NODES}",
    "pip_install_private_repos": f"the packages must already be installed on {_NODES}",
    "poetry_install_from_file": f"use `pip_install_from_pyproject` or install on {_NODES}",
    "entrypoint": "Ray starts the worker processes itself",
    "shell": "Ray starts the worker processes itself",
    "cmd": "Ray starts the worker processes itself",
}
_WHY_IGNORED = {
    "run_function": "it runs in the worker of the first input that uses the image, with that "
    "function's resources, secrets and volumes",
    "add_local_python_source": "Ray's `py_modules` ships the whole package directory",
}
_REMOVED = {
    "copy_mount": "use `Image.add_local_dir(copy=True)` or `Image.add_local_file(copy=True)`",
    "conda": "use `Image.micromamba()`",
    "conda_install": "use `Image.micromamba_install()`",
    "conda_update_from_environment": "use `Image.micromamba_install(spec_file=...)`",
    "extend": "use `Image.dockerfile_commands()`",
}


class _AutoDockerignore:
    def __repr__(self) -> str:
        return "AUTO_DOCKERIGNORE"


AUTO_DOCKERIGNORE: Any = _AutoDockerignore()


@dataclass(frozen=True)
class _Step:
    """One recorded builder call. `key()` covers everything that defines the image's id."""

    kind: str
    shown: str = ""  # the call's arguments, for messages
    installer: str = ""  # "pip" or "uv" for package steps
    packages: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    uv_version: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    path: str = ""  # workdir, or the remote path of local files
    local: str = ""  # absolute local path of a file or directory
    py_paths: tuple[str, ...] = ()
    ignore: Any = None
    blob: bytes = b""  # run_function: cloudpickled (fn, args, kwargs, env)
    digest: str = ""
    python_version: str | None = None
    warning: str = ""  # once-per-kind warning when the image is used
    ignored: tuple[str, ...] = ()  # build-only options given that have no effect here

    def key(self) -> str:
        return repr(
            (
                self.kind,
                self.shown,
                self.installer,
                self.packages,
                self.options,
                self.uv_version,
                self.env,
                self.path,
                self.local,
                self.py_paths,
                self.digest,
            )
        )


def _show(*args: Any, **kwargs: Any) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items() if v]
    return ", ".join(parts)


def _short(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


def _flatten(method: str, values: Sequence[str | list[str]]) -> list[str]:
    out: list[str] = []
    for value in values:
        for item in value if isinstance(value, list | tuple) else [value]:
            if not isinstance(item, str):
                raise InvalidError(
                    f"`Image.{method}` expects strings or lists of strings, got {item!r}."
                )
            out.append(item)
    return out


def _reject_flags(method: str, packages: list[str]) -> None:
    flags = [p for p in packages if p.strip().startswith("-")]
    if flags:
        raise InvalidError(
            f"`Image.{method}` got installer flags in its package list: {' '.join(flags)}. "
            f"Pass them with `extra_options=` (e.g. `extra_options={' '.join(flags)!r}`)."
        )


def _install_options(
    find_links: str | None,
    index_url: str | None,
    extra_index_url: str | None,
    pre: bool,
    extra_options: str,
) -> tuple[str, ...]:
    opts: list[str] = []
    for flag, value in (
        ("--find-links", find_links),
        ("--index-url", index_url),
        ("--extra-index-url", extra_index_url),
    ):
        if value:
            opts += [flag, value]
    if pre:
        opts.append("--pre")
    return (*opts, *shlex.split(extra_options or ""))


def _ignored(**given: Any) -> tuple[str, ...]:
    return tuple(f"{name}=" for name, value in given.items() if value)


_known: weakref.WeakValueDictionary[str, Image] = weakref.WeakValueDictionary()


class _ImageMeta(type):
    def __getattr__(cls, name: str) -> Any:
        if name in _REMOVED:
            raise AttributeError(f"`Image.{name}` was removed from Modal; {_REMOVED[name]}.")
        raise AttributeError(f"type object 'Image' has no attribute {name!r}")


class Image(metaclass=_ImageMeta):
    """Base class for container images to run functions in.

    Use a factory such as `modal.Image.debian_slim()`; every builder method returns a new Image.
    """

    __slots__ = ("__weakref__", "_steps")
    _steps: tuple[_Step, ...]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise InvalidError(
            "`modal.Image` has no constructor; use a factory such as `modal.Image.debian_slim()`."
        )

    def __getattr__(self, name: str) -> Any:
        if name in _REMOVED:
            raise AttributeError(f"`Image.{name}` was removed from Modal; {_REMOVED[name]}.")
        raise AttributeError(f"'Image' object has no attribute {name!r}")

    @classmethod
    def _new(cls, steps: tuple[_Step, ...]) -> Image:
        obj = object.__new__(cls)
        obj._steps = steps
        return obj

    def _add(self, kind: str, shown: str = "", **fields: Any) -> Image:
        if kind in _REASONS and "warning" not in fields:
            call = f"Image.{kind}({_short(shown)})"
            fields["warning"] = f"{call} cannot run on Ray: {_REASONS[kind]}; the step is skipped."
        return Image._new((*self._steps, _Step(kind, shown, **fields)))

    @staticmethod
    def _base(kind: str, python_version: str | None = None, shown: str = "") -> Image:
        if python_version is not None and not re.fullmatch(r"3\.\d+(\.\d+)?", str(python_version)):
            raise InvalidError(f"Unsupported Python version {python_version!r}; use e.g. '3.12'.")
        return Image._new(())._add(kind, shown, python_version=python_version)

    def __repr__(self) -> str:
        return f"Image({self.object_id}, steps={[s.kind for s in self._steps]})"

    # -- bases -----------------------------------------------------------------------------

    @staticmethod
    def debian_slim(python_version: str | None = None, force_build: bool = False) -> Image:
        """Default image: here, the cluster's own Python environment."""
        return Image._base("debian_slim", python_version)

    @staticmethod
    def micromamba(python_version: str | None = None, force_build: bool = False) -> Image:
        """A Micromamba base image: here, the cluster's own Python environment."""
        return Image._base("micromamba", python_version)

    @staticmethod
    def from_scratch(force_build: bool = False) -> Image:
        """An empty image: functions still run in the cluster's own Python environment."""
        return Image._base("from_scratch")

    @staticmethod
    def from_registry(
        tag: str,
        secret: Any = None,
        *,
        setup_dockerfile_commands: Sequence[str] = (),
        force_build: bool = False,
        add_python: str | None = None,
        **kwargs: Any,
    ) -> Image:
        """A registry image: Ray cannot pull it; warns, and uses the cluster's environment."""
        return Image._base("from_registry", add_python, _show(tag))

    @staticmethod
    def from_aws_ecr(
        tag: str,
        secret: Any = None,
        *,
        setup_dockerfile_commands: Sequence[str] = (),
        force_build: bool = False,
        add_python: str | None = None,
        **kwargs: Any,
    ) -> Image:
        return Image._base("from_aws_ecr", add_python, _show(tag))

    @staticmethod
    def from_gcp_artifact_registry(
        tag: str,
        secret: Any = None,
        *,
        setup_dockerfile_commands: Sequence[str] = (),
        force_build: bool = False,
        add_python: str | None = None,
        **kwargs: Any,
    ) -> Image:
        return Image._base("from_gcp_artifact_registry", add_python, _show(tag))

    @staticmethod
    def from_dockerfile(
        path: str | Path,
        *,
        force_build: bool = False,
        context_dir: Path | str | None = None,
        ignore: Any = AUTO_DOCKERIGNORE,
        build_args: dict[str, str] | None = None,
        registry_secret: Any = None,
        secrets: Collection[Any] | None = None,
        env: dict[str, str | None] | None = None,
        gpu: str | None = None,
        add_python: str | None = None,
    ) -> Image:
        """A Dockerfile image: Ray cannot build it; warns, and uses the cluster's environment."""
        return Image._base("from_dockerfile", add_python, _show(str(path)))

    @staticmethod
    def from_name(name: str, *, environment_name: str | None = None, client: Any = None) -> Image:
        """A published image: none exist on Ray; warns, and uses the cluster's environment."""
        return Image._base("from_name", None, _show(name))

    @dual_static
    async def from_id(image_id: str, client: Any = None) -> Image:
        """The image with this `object_id` made in this process (else the cluster's environment)."""
        known = _known.get(image_id)
        if known is not None:
            return known
        return Image._base("from_id", None, _show(image_id))._replace_warning(
            f"Image.from_id({image_id!r}): no image with this id was defined in this process; "
            "the cluster's environment is used."
        )

    def _replace_warning(self, warning: str) -> Image:
        *head, last = self._steps
        return Image._new((*head, _Step(**{**last.__dict__, "warning": warning})))

    # -- Python packages -------------------------------------------------------------------

    def _packages(
        self,
        kind: str,
        installer: str,
        packages: list[str],
        options: tuple[str, ...],
        shown: str,
        uv_version: str | None = None,
        **ignored: Any,
    ) -> Image:
        return self._add(
            kind,
            shown,
            installer=installer,
            packages=tuple(packages),
            options=options,
            uv_version=uv_version,
            ignored=_ignored(**ignored),
        )

    def pip_install(
        self,
        *packages: str | list[str],
        find_links: str | None = None,
        index_url: str | None = None,
        extra_index_url: str | None = None,
        pre: bool = False,
        extra_options: str = "",
        force_build: bool = False,
        env: dict[str, str | None] | None = None,
        secrets: Collection[Any] | None = None,
        gpu: str | None = None,
    ) -> Image:
        """Install Python packages with pip (`runtime_env["pip"]`)."""
        pkgs = _flatten("pip_install", packages)
        if not pkgs:
            return self
        _reject_flags("pip_install", pkgs)
        opts = _install_options(find_links, index_url, extra_index_url, pre, extra_options)
        return self._packages(
            "pip_install", "pip", pkgs, opts, _show(*pkgs), env=env, secrets=secrets, gpu=gpu
        )

    def uv_pip_install(
        self,
        *packages: str | list[str],
        requirements: list[str] | None = None,
        find_links: str | None = None,
        index_url: str | None = None,
        extra_index_url: str | None = None,
        pre: bool = False,
        extra_options: str = "",
        force_build: bool = False,
        uv_version: str | None = None,
        env: dict[str, str | None] | None = None,
        secrets: Collection[Any] | None = None,
        gpu: str | None = None,
    ) -> Image:
        """Install Python packages with uv (`runtime_env["uv"]`)."""
        pkgs = _flatten("uv_pip_install", packages)
        _reject_flags("uv_pip_install", pkgs)
        if not pkgs and not requirements:
            return self
        if is_local():
            for req in requirements or []:
                pkgs += _read_requirements(req, "uv_pip_install")
        opts = _install_options(find_links, index_url, extra_index_url, pre, extra_options)
        return self._packages(
            "uv_pip_install",
            "uv",
            pkgs,
            opts,
            _show(*pkgs),
            uv_version,
            env=env,
            secrets=secrets,
            gpu=gpu,
        )

    def pip_install_from_requirements(
        self,
        requirements_txt: str,
        find_links: str | None = None,
        *,
        index_url: str | None = None,
        extra_index_url: str | None = None,
        pre: bool = False,
        extra_options: str = "",
        force_build: bool = False,
        env: dict[str, str | None] | None = None,
        secrets: Collection[Any] | None = None,
        gpu: str | None = None,
    ) -> Image:
        """Install the packages listed in a local requirements file."""
        kind = "pip_install_from_requirements"
        pkgs = _read_requirements(requirements_txt, kind) if is_local() else []
        opts = _install_options(find_links, index_url, extra_index_url, pre, extra_options)
        return self._packages(
            kind, "pip", pkgs, opts, _show(requirements_txt), env=env, secrets=secrets, gpu=gpu
        )

    def pip_install_from_pyproject(
        self,
        pyproject_toml: str,
        optional_dependencies: Sequence[str] = (),
        *,
        find_links: str | None = None,
        index_url: str | None = None,
        extra_index_url: str | None = None,
        pre: bool = False,
        extra_options: str = "",
        force_build: bool = False,
        env: dict[str, str | None] | None = None,
        secrets: Collection[Any] | None = None,
        gpu: str | None = None,
    ) -> Image:
        """Install `[project] dependencies` (and the named optional groups) of a pyproject.toml."""
        kind = "pip_install_from_pyproject"
        path = Path(pyproject_toml).expanduser()
        pkgs = _pyproject_dependencies(path, kind, optional_dependencies) if is_local() else []
        opts = _install_options(find_links, index_url, extra_index_url, pre, extra_options)
        return self._packages(
            kind, "pip", pkgs, opts, _show(pyproject_toml), env=env, secrets=secrets, gpu=gpu
        )

    def uv_sync(
        self,
        uv_project_dir: str = "./",
        *,
        force_build: bool = False,
        groups: list[str] | None = None,
        extras: list[str] | None = None,
        frozen: bool = True,
        extra_options: str = "",
        uv_version: str | None = None,
        env: dict[str, str | None] | None = None,
        secrets: Collection[Any] | None = None,
        gpu: str | None = None,
    ) -> Image:
        """Install a uv project's dependencies (from pyproject.toml; uv.lock pins are not used)."""
        project = Path(uv_project_dir).expanduser()
        pkgs: list[str] = []
        warning = ""
        if is_local():
            pkgs = _pyproject_dependencies(
                project / "pyproject.toml", "uv_sync", extras or (), groups or ()
            )
            if frozen and (project / "uv.lock").exists():
                warning = (
                    f"Image.uv_sync({uv_project_dir!r}): Ray installs the pyproject.toml "
                    "dependencies with `uv pip install`; the versions pinned in uv.lock "
                    "are not enforced."
                )
        image = self._packages(
            "uv_sync",
            "uv",
            pkgs,
            (),
            _show(uv_project_dir),
            uv_version,
            env=env,
            secrets=secrets,
            gpu=gpu,
            extra_options=extra_options,
        )
        return image._replace_warning(warning)

    # -- steps Ray cannot perform (warned about when the image is used) ---------------------

    def apt_install(
        self,
        *packages: str | list[str],
        force_build: bool = False,
        env: dict[str, str | None] | None = None,
        secrets: Collection[Any] | None = None,
        gpu: str | None = None,
    ) -> Image:
        """Install Debian packages: not possible on Ray; they must be on the nodes already."""
        pkgs = _flatten("apt_install", packages)
        return self._add("apt_install", _show(*pkgs)) if pkgs else self

    def run_commands(
        self,
        *commands: str | list[str],
        env: dict[str, str | None] | None = None,
        secrets: Collection[Any] | None = None,
        volumes: dict[Any, Any] | None = None,
        gpu: str | None = None,
        force_build: bool = False,
    ) -> Image:
        """Shell build steps: not possible on Ray; run them on the nodes beforehand."""
        cmds = _flatten("run_commands", commands)
        return self._add("run_commands", _show(*cmds)) if cmds else self

    def micromamba_install(
        self,
        *packages: str | list[str],
        spec_file: str | None = None,
        channels: Sequence[str] = (),
        force_build: bool = False,
        env: dict[str, str | None] | None = None,
        secrets: Collection[Any] | None = None,
        gpu: str | None = None,
    ) -> Image:
        """Conda packages: not possible on Ray; they must be on the nodes already."""
        pkgs = _flatten("micromamba_install", packages)
        if not pkgs and spec_file is None:
            return self
        return self._add("micromamba_install", _show(*pkgs, spec_file=spec_file))

    def pip_install_private_repos(
        self,
        *repositories: str,
        git_user: str,
        find_links: str | None = None,
        index_url: str | None = None,
        extra_index_url: str | None = None,
        pre: bool = False,
        extra_options: str = "",
        gpu: str | None = None,
        env: dict[str, str | None] | None = None,
        secrets: Collection[Any] | None = None,
        force_build: bool = False,
    ) -> Image:
        """Private git repositories need build-time secrets: not possible on Ray."""
        return (
            self._add("pip_install_private_repos", _show(*repositories)) if repositories else self
        )

    def poetry_install_from_file(
        self,
        poetry_pyproject_toml: str,
        poetry_lockfile: str | None = None,
        *,
        ignore_lockfile: bool = False,
        force_build: bool = False,
        with_: Sequence[str] = (),
        without: Sequence[str] = (),
        only: Sequence[str] = (),
        poetry_version: str | None = "latest",
        old_installer: bool = False,
        env: dict[str, str | None] | None = None,
        secrets: Collection[Any] | None = None,
        gpu: str | None = None,
    ) -> Image:
        """Poetry installs: not possible on Ray (see `pip_install_from_pyproject`)."""
        return self._add("poetry_install_from_file", _show(poetry_pyproject_toml))

    def dockerfile_commands(
        self,
        *dockerfile_commands: str | list[str],
        context_files: dict[str, str] | None = None,
        env: dict[str, str | None] | None = None,
        secrets: Collection[Any] | None = None,
        gpu: str | None = None,
        context_dir: Path | str | None = None,
        force_build: bool = False,
        ignore: Any = AUTO_DOCKERIGNORE,
        build_args: dict[str, str] | None = None,
    ) -> Image:
        """Dockerfile commands: not possible on Ray."""
        cmds = _flatten("dockerfile_commands", dockerfile_commands)
        return self._add("dockerfile_commands", _show(*cmds)) if cmds else self

    def _command_list(self, kind: str, commands: list[str]) -> Image:
        if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
            raise InvalidError(f"`Image.{kind}` expects a list of strings, got {commands!r}.")
        return self._add(kind, _show(commands))

    def entrypoint(self, entrypoint_commands: list[str]) -> Image:
        """Set the ENTRYPOINT: meaningless on Ray (warns)."""
        return self._command_list("entrypoint", entrypoint_commands)

    def shell(self, shell_commands: list[str]) -> Image:
        """Overwrite the default shell: meaningless on Ray (warns)."""
        return self._command_list("shell", shell_commands)

    def cmd(self, cmd: list[str]) -> Image:
        """Set the default command (`CMD`): meaningless on Ray (warns)."""
        return self._command_list("cmd", cmd)

    # -- environment, files and code -------------------------------------------------------

    def env(self, vars: dict[str, str]) -> Image:
        """Set environment variables in the function's worker (`runtime_env["env_vars"]`)."""
        bad = [k for k, v in vars.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise InvalidError(f"`Image.env` expects str keys and values; fix {bad!r}.")
        return self._add("env", _show(sorted(vars)), env=tuple(vars.items())) if vars else self

    def workdir(self, path: str | PurePosixPath) -> Image:
        """Set the working directory for later steps and for function execution."""
        return self._add("workdir", _show(str(path)), path=str(path))

    def add_local_dir(
        self,
        local_path: str | Path,
        remote_path: str,
        *,
        copy: bool = False,
        ignore: Sequence[str] | Callable[[Path], bool] = (),
    ) -> Image:
        """Add a local directory's content at `remote_path` in the worker (before any input)."""
        local = Path(local_path).expanduser().absolute()
        if is_local() and not local.is_dir():
            raise FileNotFoundError(
                f"`Image.add_local_dir`: local directory {str(local)!r} does not exist."
            )
        _matcher(ignore)
        return self._add(
            "add_local_dir",
            _show(str(local_path), str(remote_path), ignore=_ignore_key(ignore) if ignore else ""),
            local=str(local),
            path=str(remote_path),
            ignore=ignore,
        )

    def add_local_file(
        self, local_path: str | Path, remote_path: str, *, copy: bool = False
    ) -> Image:
        """Add a local file at `remote_path` (a trailing `/` keeps the local file name)."""
        local = Path(local_path).expanduser().absolute()
        if is_local() and not local.is_file():
            raise FileNotFoundError(
                f"`Image.add_local_file`: local file {str(local)!r} does not exist."
            )
        remote = str(remote_path)
        if remote.endswith("/"):
            remote += local.name
        return self._add(
            "add_local_file", _show(str(local_path), remote), local=str(local), path=remote
        )

    def add_local_python_source(
        self,
        *modules: str,
        copy: bool = False,
        ignore: Sequence[str] | Callable[[Path], bool] = NON_PYTHON_FILES,
    ) -> Image:
        """Ship local Python packages/modules to workers (`runtime_env["py_modules"]`)."""
        paths = tuple(dict.fromkeys(_module_path(m) for m in modules)) if is_local() else ()
        ignored = () if ignore is NON_PYTHON_FILES else ("ignore=",)
        return self._add(
            "add_local_python_source", _show(*modules), py_paths=paths, ignored=ignored
        )

    def copy_local_dir(
        self,
        local_path: str | Path,
        remote_path: str = "./",
        ignore: Sequence[str] | Callable[[Path], bool] = (),
    ) -> Image:
        """Removed in Modal 1.1: an alias of `add_local_dir(..., copy=True)` with a warning."""
        deprecation(
            "image.copy_local_dir",
            "`Image.copy_local_dir` was removed in Modal 1.1; use "
            "`Image.add_local_dir(..., copy=True)`.",
        )
        return self.add_local_dir(local_path, remote_path, copy=True, ignore=ignore)

    def copy_local_file(self, local_path: str | Path, remote_path: str = "./") -> Image:
        """Removed in Modal 1.1: an alias of `add_local_file(..., copy=True)` with a warning."""
        deprecation(
            "image.copy_local_file",
            "`Image.copy_local_file` was removed in Modal 1.1; use "
            "`Image.add_local_file(..., copy=True)`.",
        )
        return self.add_local_file(local_path, remote_path, copy=True)

    def run_function(
        self,
        raw_f: Callable[..., Any],
        *,
        env: dict[str, str | None] | None = None,
        secrets: Collection[Any] | None = None,
        volumes: dict[Any, Any] | None = None,
        network_file_systems: dict[Any, Any] | None = None,
        gpu: str | list[str] | None = None,
        cpu: float | None = None,
        memory: int | None = None,
        timeout: int = 3600,
        cloud: str | None = None,
        region: str | Sequence[str] | None = None,
        force_build: bool = False,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        include_source: bool = True,
    ) -> Image:
        """Run `raw_f` once per node, in the worker, before the first input that uses the image."""
        import cloudpickle

        if not callable(raw_f):
            raise InvalidError(f"`Image.run_function` expects a function, got {raw_f!r}.")
        name = getattr(raw_f, "__qualname__", repr(raw_f))
        code = getattr(raw_f, "__code__", None)
        source = repr((code.co_code, code.co_consts)) if code is not None else name
        kwargs = dict(kwargs or {})
        digest = hashlib.sha256(
            repr((self.object_id, name, source, tuple(args), sorted(kwargs.items()), env)).encode()
        ).hexdigest()
        blob = cloudpickle.dumps((raw_f, tuple(args), kwargs, dict(env or {})))
        return self._add(
            "run_function",
            name,
            blob=blob,
            digest=digest,
            ignored=_ignored(
                secrets=secrets,
                volumes=volumes,
                network_file_systems=network_file_systems,
                gpu=gpu,
                cpu=cpu,
                memory=memory,
                cloud=cloud,
                region=region,
            ),
        )

    @contextlib.contextmanager
    def imports(self) -> Iterator[None]:
        """Imports that may fail locally: an ImportError is swallowed locally, raised in workers."""
        try:
            yield
        except ImportError:
            if not is_local():
                raise

    def pipe(self, func: Callable[..., Image], *args: Any, **kwargs: Any) -> Image:
        """Apply a local function to expand the Image recipe: `func(self, *args, **kwargs)`."""
        return func(self, *args, **kwargs)

    # -- object plumbing -------------------------------------------------------------------

    @property
    def object_id(self) -> str:
        digest = hashlib.sha256("\n".join(s.key() for s in self._steps).encode()).hexdigest()
        image_id = "im-" + digest[:24]
        _known.setdefault(image_id, self)
        return image_id

    @property
    def client(self) -> Any:
        return None

    @property
    def logs(self) -> Iterator[str]:
        """There is no build, so there are no build logs."""
        return iter(())

    @dual
    async def hydrate(self, client: Any = None) -> Image:
        return self

    @dual
    async def build(self, app: Any = None) -> Image:
        """Nothing to build ahead of time; reports the steps Ray cannot perform."""
        self._emit_warnings()
        return self

    @dual
    async def publish(
        self,
        name: str,
        *,
        environment_name: str | None = None,
        experimental_options: dict[str, Any] | None = None,
        client: Any = None,
    ) -> None:
        warn_once(
            "image.publish",
            f"Image.publish({name!r}) cannot run on Ray: images are not "
            "stored on the cluster; nothing is published.",
        )

    @dual
    async def get_dashboard_url(self) -> str:
        return ""

    # -- the interface used by the function layer ------------------------------------------

    def _runtime_env(self) -> dict[str, Any]:
        """Ray runtime_env keys contributed by this image: pip/uv, env_vars, py_modules."""
        out: dict[str, Any] = {}
        steps = [s for s in self._steps if s.installer]
        packages = list(dict.fromkeys(p for s in steps for p in s.packages))
        if packages and packages_mode() == "install":
            # Resolved together with the worker runtime's own requirements, so that no image
            # package replaces one that Ray or modal-ray needs (runtime_requirements.py).
            runtime, clashes = for_image(packages)
            for text in clashes:
                warn_once(f"image.runtime.{text}", text)
            packages += runtime
            options = [o for opts in dict.fromkeys(s.options for s in steps) for o in opts]
            # One runtime_env holds either pip or uv; uv accepts pip's requirement syntax.
            if any(s.installer == "uv" for s in steps):
                uv_opts = ["--prerelease=allow" if o == "--pre" else o for o in options]
                uv: dict[str, Any] = {
                    "packages": packages,
                    "uv_pip_install_options": [*_UV_DEFAULTS, *uv_opts],
                }
                version = next((s.uv_version for s in reversed(steps) if s.uv_version), None)
                if version:
                    uv["uv_version"] = version if version[0] in "=<>!~" else f"=={version}"
                out["uv"] = uv
            else:
                out["pip"] = {
                    "packages": packages,
                    "pip_install_options": [*_PIP_DEFAULTS, *options],
                }
        env_vars = {k: v for s in self._steps for k, v in s.env}
        if env_vars:
            out["env_vars"] = env_vars
        py_modules = list(dict.fromkeys(p for s in self._steps for p in s.py_paths))
        if py_modules:
            out["py_modules"] = py_modules
        return out

    def _worker_setup(self) -> ImageSetup | None:
        """The worker-side part (files, run_function, workdir, package check), or None."""
        ops: list[tuple[str, str, bytes, str, str]] = []
        for s in self._steps:
            what = f"`Image.{s.kind}({_short(s.shown)})`"
            if s.kind == "workdir":
                ops.append(("workdir", s.path, b"", "", what))
            elif s.kind == "add_local_dir":
                data = _pack_dir(Path(s.local), s.ignore, what)
                ops.append(("extract", s.path, data, hashlib.sha256(data).hexdigest(), what))
            elif s.kind == "add_local_file":
                local = Path(s.local)
                if not local.is_file():
                    raise FileNotFoundError(f"{what}: local file {s.local!r} does not exist.")
                folder, name = posixpath.split(s.path)
                data = _zip([(name, local)], what)
                digest = hashlib.sha256(data).hexdigest()
                ops.append(("extract", folder or ".", data, digest, what))
            elif s.kind == "run_function":
                ops.append(("run", s.shown, s.blob, s.digest, what))
        check = packages_mode() == "check"
        requirements = tuple(p for s in self._steps for p in s.packages) if check else ()
        # Kept for a layer of their own, if the installer refuses them beside the runtime.
        steps = _layer_steps(self._steps) if packages_mode() == "install" else ()
        if not ops and not requirements and not steps:
            return None
        return ImageSetup(tuple(ops), requirements, steps)

    def _emit_warnings(self) -> None:
        """Once-per-kind warnings for the steps Ray cannot perform or options it ignores."""
        local = f"{sys.version_info.major}.{sys.version_info.minor}"
        for s in self._steps:
            if s.warning:
                warn_once(f"image.{s.kind}", s.warning)
            if s.ignored:
                where = _WHY_IGNORED.get(s.kind, "Ray installs packages without a build step")
                warn_once(
                    f"image.{s.kind}.ignored",
                    f"Image.{s.kind}({_short(s.shown)}): "
                    f"{', '.join(s.ignored)} not applied on Ray; {where}.",
                )
            version = s.python_version
            if version and ".".join(version.split(".")[:2]) != local:
                warn_once(
                    "image.python_version",
                    f"Python {version!r} was requested by Image.{s.kind}; "
                    f"functions run with the cluster's Python ({local}), the same as the "
                    "driver's; the requested version is not used.",
                )
        option_sets = {s.options for s in self._steps if s.installer}
        if len(option_sets) > 1:
            warn_once(
                "image.install_options",
                "This image's package steps use different install "
                "options; Ray installs all of an image's packages in one step, so the options "
                f"apply to every package: {sorted(o for opts in option_sets for o in opts)}.",
            )


Image.__module__ = "modal.image"


def _layer_steps(steps: Sequence[_Step]) -> tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]:
    """The package steps as a layer installs them (`layer.py`): (packages, options) each."""
    return tuple((tuple(s.packages), tuple(s.options)) for s in steps if s.installer and s.packages)


def default_image() -> Image:
    """The image functions get when they name none."""
    return Image.debian_slim()
