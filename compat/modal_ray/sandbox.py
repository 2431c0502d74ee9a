"""`modal.Sandbox`: isolated processes on the cluster, created and driven from anywhere.

A sandbox lives on one node, under that node's supervisor (see `sandbox_runtime` and the
backend's `sandbox` module); this object is only a handle (environment + id), so any process of
the cluster can rebuild it with `Sandbox.from_id`, and it keeps running when its creator exits
until it ends by itself, its `timeout` passes, or someone calls `terminate()`.

`create` checks every keyword of Modal 1.6.4's surface: what works on Ray is honoured, cloud
placement hints (`region`, `cloud`, `runtime`) warn once, and what cannot be honoured yet raises
`UnimplementedError` instead of being dropped.
"""

from __future__ import annotations

import asyncio
import builtins
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from . import config
from .container_process import ContainerProcess
from .exception import (
    ClientClosed,
    InvalidError,
    SandboxTerminatedError,
    SandboxTimeoutError,
    UnimplementedError,
)
from .file_io import FileIO, FileWatchEvent, FileWatchEventType, watch_events
from .io_streams import StreamReader, StreamWriter, stream_kind
from .sandbox_fs import SandboxFilesystem
from .sandbox_ref import SandboxRef, connect
from .synchronizer import dual, dual_static
from .tunnel import PLAIN_WARNING, Tunnel, tunnels_of
from .warn import warn_once

DEFAULT_TIMEOUT = 300
WAIT_POLL_S = 50.0
ENTRYPOINT = 0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_PACKAGE_STEPS = {
    "pip_install",
    "uv_pip_install",
    "pip_install_from_requirements",
    "pip_install_from_pyproject",
    "uv_sync",
    "apt_install",
    "run_commands",
    "micromamba_install",
    "pip_install_private_repos",
    "poetry_install_from_file",
    "dockerfile_commands",
    "run_function",
    "from_dockerfile",
}


def _unsupported(what: str, hint: str = "") -> UnimplementedError:
    return UnimplementedError(
        f"`Sandbox.create({what})` is not supported by this version of modal-ray yet"
        + (f"; {hint}" if hint else ".")
    )


def _image_view(image: Any) -> tuple[dict[str, str], str | None, list[tuple[str, bytes, int]]]:
    """(env, workdir, files) of an Image as a sandbox sees it."""
    env: dict[str, str] = {}
    workdir: str | None = None
    files: list[tuple[str, bytes, int]] = []
    for step in getattr(image, "_steps", ()):
        if step.kind == "env":
            env.update(dict(step.env))
        elif step.kind == "workdir":
            workdir = str(PurePosixPath(workdir or "/") / step.path)
        elif step.kind in ("add_local_file", "copy_local_file"):
            local = Path(step.local)
            remote = str(PurePosixPath(workdir or "/") / step.path)
            files.append((remote, local.read_bytes(), local.stat().st_mode))
        elif step.kind in ("add_local_dir", "copy_local_dir"):
            base = Path(step.local)
            remote_base = PurePosixPath(workdir or "/") / step.path
            for path in sorted(base.rglob("*")):
                if path.is_file() and not path.is_symlink():
                    rel = path.relative_to(base).as_posix()
                    files.append((str(remote_base / rel), path.read_bytes(), path.stat().st_mode))
        elif step.kind in _PACKAGE_STEPS and not _python_packages(step):
            warn_once(
                f"sandbox-image-{step.kind}",
                f"`Image.{step.kind}` is not applied inside sandboxes: a sandbox runs the"
                " node's Python and system tools, with the packages of the image's pip/uv"
                " install steps.",
            )
    return env, workdir, files


def _python_packages(step: Any) -> bool:
    """A step that installs Python packages by requirement (applied in sandboxes)."""
    return step.installer in ("pip", "uv") and bool(step.packages)


def _package_steps(image: Any) -> list[tuple[list[str], list[str]]]:
    """The image's Python package steps, (requirements, pip options) each, in order."""
    return [
        (list(step.packages), list(step.options))
        for step in getattr(image, "_steps", ())
        if step.kind in _PACKAGE_STEPS and _python_packages(step)
    ]


def _resources(cpu: Any, memory: Any, gpu: Any) -> dict[str, float] | None:
    if cpu is None and memory is None and gpu is None:
        return None
    from .resources import parse_resources

    res = parse_resources(cpu=cpu, memory=memory, gpu=gpu)
    bundle: dict[str, float] = {}
    if cpu is not None:
        bundle["CPU"] = float(res.num_cpus)
    if res.memory_bytes:
        bundle["memory"] = float(res.memory_bytes)
    if res.num_gpus:
        bundle["GPU"] = float(res.num_gpus)
        if res.accelerator_type:
            bundle[f"accelerator_type:{res.accelerator_type}"] = 0.001
    return bundle or None


def _limit(value: Any, what: str) -> Any:
    """The hard limit of a `(request, limit)` tuple (`cpu=` cores, `memory=` MiB), else None."""
    if not isinstance(value, tuple):
        return None
    if len(value) != 2 or not all(isinstance(v, (int, float)) and v > 0 for v in value):
        raise InvalidError(f"`{what}=` takes a number or a (request, limit) tuple, not {value!r}.")
    if value[1] < value[0]:
        raise InvalidError(f"`{what}=` limit {value[1]} is below the request {value[0]}.")
    return value[1]


def _extract_snapshot(data: bytes) -> str:
    """Unpack a snapshot into a new temporary directory (safely: no absolute paths, no `..`,
    no links out, no special files)."""
    import atexit
    import io
    import shutil
    import tarfile
    import tempfile

    target = tempfile.mkdtemp(prefix="modal-ray-snapshot-")
    # The image built from it is packed in this process; nothing of it outlives the process.
    atexit.register(shutil.rmtree, target, ignore_errors=True)

    def safe(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        try:
            return tarfile.data_filter(member, path)
        except tarfile.FilterError:
            return None  # e.g. a link to an absolute path: skipped, never followed

    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(target, filter=safe)
    return target


def _positive(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise InvalidError(f"`{what}` must be a positive number of seconds, not {value!r}.")
    return float(value)


def _abs_path(value: Any, what: str) -> str:
    if not isinstance(value, (str, PurePosixPath)) or not str(value).startswith("/"):
        raise InvalidError(f"`{what}` must be an absolute path, not {value!r}.")
    text = str(value)
    if "\x00" in text or ".." in PurePosixPath(text).parts:
        raise InvalidError(f"`{what}` must be an absolute path without `..`, not {value!r}.")
    return str(PurePosixPath(text))


def _env(env: Mapping[str, str | None] | None, secrets: Sequence[Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    if secrets:
        from .secret import merge_secrets

        out.update(merge_secrets(list(secrets)))
    for key, value in (env or {}).items():
        if not isinstance(key, str) or (value is not None and not isinstance(value, str)):
            raise InvalidError(f"`env` expects str keys and values; fix {key!r}.")
        if value is not None:
            out[key] = value
    return out


def _terminal(info: Any) -> tuple[dict[str, int], dict[str, str]]:
    """An exec's terminal from `pty=True` / `pty_info`: its size and the environment naming it
    (`TERM`...). `pty_info` is read by Modal's field names (`winsz_rows`, `winsz_cols`,
    `env_term`, `env_colorterm`, `env_term_program`); missing fields take a 24x80 xterm."""
    size = {"rows": 24, "cols": 80}
    env = {"TERM": "xterm-256color"}
    if info is not None:
        for key, field in (("rows", "winsz_rows"), ("cols", "winsz_cols")):
            value = getattr(info, field, None)
            if value:
                if not isinstance(value, int) or not 0 < value < 65536:
                    raise InvalidError(f"`pty_info.{field}` must be a number from 1 to 65535.")
                size[key] = value
        for var, field in (
            ("TERM", "env_term"),
            ("COLORTERM", "env_colorterm"),
            ("TERM_PROGRAM", "env_term_program"),
        ):
            value = getattr(info, field, None)
            if isinstance(value, str) and value:
                env[var] = value
    return size, env


class Sandbox:
    """A sandboxed process tree on the cluster (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise InvalidError("`modal.Sandbox` has no constructor; use `modal.Sandbox.create(...)`.")

    @classmethod
    def _handle(cls, environment: str, info: Mapping[str, Any]) -> Sandbox:
        obj = object.__new__(cls)
        obj._ref = SandboxRef(environment, str(info["sandbox_id"]))
        obj._returncode = info.get("returncode")
        obj._status = info.get("status", "running")
        obj._detached = False
        obj._probe = None
        obj._entry = None
        return obj

    _ref: SandboxRef
    _returncode: int | None
    _status: str
    _detached: bool
    _probe: Any
    _entry: ContainerProcess[Any] | None

    def __repr__(self) -> str:
        return f"Sandbox({self._ref.sandbox_id})"

    @property
    def object_id(self) -> str:
        return self._ref.sandbox_id

    @property
    def client(self) -> None:
        return None

    def _live(self) -> SandboxRef:
        if self._detached:
            raise ClientClosed(f"{self!r} was detached; use `Sandbox.from_id` to get it again.")
        return self._ref

    # -- creation and lookup ------------------------------------------------------------------

    @dual_static
    async def create(
        *args: str,
        app: Any = None,
        name: str | None = None,
        tags: Mapping[str, str] | None = None,
        image: Any = None,
        env: Mapping[str, str | None] | None = None,
        secrets: Sequence[Any] | None = None,
        network_file_systems: Mapping[Any, Any] = {},
        timeout: int = DEFAULT_TIMEOUT,
        idle_timeout: int | None = None,
        workdir: str | None = None,
        gpu: Any = None,
        cloud: str | None = None,
        region: str | Sequence[str] | None = None,
        cpu: Any = None,
        memory: Any = None,
        runtime: str | None = None,
        block_network: bool = False,
        outbound_cidr_allowlist: Sequence[str] | None = None,
        outbound_domain_allowlist: Sequence[str] | None = None,
        _experimental_outbound_policy: Any = None,
        inbound_cidr_allowlist: Sequence[str] | None = None,
        volumes: Mapping[Any, Any] = {},
        pty: bool = False,
        encrypted_ports: Sequence[int] = [],
        h2_ports: Sequence[int] = [],
        unencrypted_ports: Sequence[int] = [],
        custom_domain: str | None = None,
        proxy: Any = None,
        include_oidc_identity_token: bool = False,
        readiness_probe: Any = None,
        verbose: bool = False,
        experimental_options: Mapping[str, Any] | None = None,
        _experimental_enable_snapshot: bool = False,
        _experimental_persistent: bool = False,
        _experimental_scheduler_placement: Any = None,
        client: Any = None,
        environment_name: str | None = None,
        pty_info: Any = None,
        cidr_allowlist: Sequence[str] | None = None,
    ) -> Sandbox:
        """Start a sandbox. With `args`, they are its entrypoint command (the sandbox ends when
        it exits); without, it idles until `timeout` or `terminate()`."""
        for arg in args:
            if not isinstance(arg, str):
                raise InvalidError(f"Sandbox entrypoint arguments must be strings, not {arg!r}.")
        ports = [*encrypted_ports, *h2_ports]
        if ports or unencrypted_ports:
            warn_once("tunnel-plain", PLAIN_WARNING)
        if cidr_allowlist is not None and outbound_cidr_allowlist is not None:
            raise InvalidError(
                "Pass `outbound_cidr_allowlist=` or its older name `cidr_allowlist=`, not both."
            )
        allowlist = outbound_cidr_allowlist if cidr_allowlist is None else cidr_allowlist
        if allowlist is not None:
            if isinstance(allowlist, str) or not all(isinstance(c, str) for c in allowlist):
                raise InvalidError(
                    f"`cidr_allowlist` takes a list of CIDR strings, not {allowlist!r}."
                )
            if block_network:
                raise InvalidError(
                    "`block_network=True` cuts all network access; a `cidr_allowlist` would"
                    " allow some. Pass one or the other."
                )
            from .sandbox_runtime.network import allowed_networks

            allowlist = allowed_networks(list(allowlist))
        for allow, what in (
            (outbound_domain_allowlist, "outbound_domain_allowlist=..."),
            (inbound_cidr_allowlist, "inbound_cidr_allowlist=..."),
            (_experimental_outbound_policy, "_experimental_outbound_policy=..."),
        ):
            if allow is not None:
                raise _unsupported(what, "use `block_network=True` to cut all network access.")
        for flag, what in (
            (pty or pty_info is not None, "pty=True"),
            (custom_domain is not None, "custom_domain=..."),
            (proxy is not None, "proxy=..."),
            (include_oidc_identity_token, "include_oidc_identity_token=True"),
            (bool(experimental_options), "experimental_options=..."),
            (_experimental_enable_snapshot, "_experimental_enable_snapshot=True"),
            (_experimental_persistent, "_experimental_persistent=True"),
            (_experimental_scheduler_placement is not None, "_experimental_scheduler_placement"),
        ):
            if flag:
                raise _unsupported(what)
        for value, key in ((cloud, "cloud"), (region, "region"), (runtime, "runtime")):
            if value is not None:
                warn_once(
                    f"sandbox-{key}",
                    f"`Sandbox.create({key}=...)` has no effect on Ray: sandboxes run on the"
                    " cluster's nodes, isolated with bubblewrap.",
                )
        if name is not None and (not isinstance(name, str) or not _NAME.match(name)):
            raise InvalidError(
                f"Invalid sandbox name {name!r}: use up to 64 letters, digits, '.', '-' or '_'."
            )
        if readiness_probe is not None and not hasattr(readiness_probe, "tcp_port"):
            raise InvalidError("`readiness_probe` must be a `modal.Probe`.")
        if environment_name is not None:
            warn_once(
                "sandbox-environment-name",
                "`Sandbox.create(environment_name=...)` is deprecated; the app's environment is"
                " used.",
            )
        if app is not None:
            context = app.run_context()
            environment = context.environment
            app_id = context.app_id
            app_name = context.app_name
        else:
            environment = config.environment_name(environment_name)
            app_id = app_name = None
        memory_limit = _limit(memory, "memory")
        timeout_s = _positive(timeout, "timeout")
        idle_s = _positive(idle_timeout, "idle_timeout")
        image_env, image_workdir, files = (
            _image_view(image) if image is not None else ({}, None, [])
        )
        work = _abs_path(workdir, "workdir") if workdir is not None else image_workdir
        kwargs: dict[str, Any] = {
            "entrypoint": list(args) or None,
            "env": {**image_env, **_env(env, secrets)},
            "workdir": work,
            "timeout": timeout_s,
            "idle_timeout": idle_s,
            "block_network": bool(block_network),
            "cidr_allowlist": None if allowlist is None else list(allowlist),
            "name": name,
            "app_id": app_id,
            "tags": dict(tags or {}),
            "files": files,
            "ports": [int(p) for p in ports],
            "memory_limit": None if memory_limit is None else int(memory_limit * 2**20),
            "cpu_limit": _limit(cpu, "cpu"),
            "raw_ports": [int(p) for p in unencrypted_ports],
            "packages": _package_steps(image) if image is not None else [],
        }
        if tags and any(not isinstance(k, str) or not isinstance(v, str) for k, v in tags.items()):
            raise InvalidError("Sandbox tags must map str to str.")
        kwargs["tags"] = {**kwargs["tags"], **({"modal.app_name": app_name} if app_name else {})}
        backend = await connect(environment)
        if volumes or network_file_systems:
            from modal_ray.volumes import prepare_mounts

            mount_set = await asyncio.get_running_loop().run_in_executor(
                None, prepare_mounts, volumes, network_file_systems, environment
            )
            kwargs["mounts"] = tuple(mount_set.mounts) if mount_set is not None else ()
        info = await backend.sandbox_create(environment, kwargs, _resources(cpu, memory, gpu))
        if not info.get("isolated", True):
            warn_once(
                "sandbox-unisolated",
                "Sandboxes run UNISOLATED (MODAL_RAY_SANDBOX_ISOLATION=none on the cluster):"
                " their code can read and change everything the Ray workers can.",
            )
        sandbox = Sandbox._handle(environment, info)
        sandbox._probe = readiness_probe
        if verbose:
            from . import output

            output.status(f"Sandbox {sandbox.object_id} created.")
        return sandbox

    @dual_static
    async def from_id(sandbox_id: str, client: Any = None) -> Sandbox:
        """A handle on a running (or recently finished) sandbox, from any process."""
        if not isinstance(sandbox_id, str):
            raise InvalidError(f"A sandbox id is a string, not {sandbox_id!r}.")
        environment = config.environment_name()
        info = await SandboxRef(environment, sandbox_id).call("describe")
        return Sandbox._handle(environment, info)

    @dual_static
    async def from_name(
        app_name: str,
        name: str,
        *,
        environment_name: str | None = None,
        include_terminated: bool = False,
        client: Any = None,
    ) -> Sandbox:
        """The sandbox created with `name=` in the app named `app_name`."""
        from .exception import NotFoundError

        environment = config.environment_name(environment_name)
        backend = await connect(environment)
        found = await backend.sandbox_list(
            environment,
            {
                "name": name,
                "tags": {"modal.app_name": app_name},
                "include_finished": include_terminated,
            },
        )
        if not found:
            raise NotFoundError(f"No running sandbox named {name!r} in app {app_name!r}.")
        return Sandbox._handle(environment, found[-1])

    @dual_static
    async def list(
        *,
        app_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        client: Any = None,
    ) -> AsyncIterator[Sandbox]:
        """Running sandboxes of the environment (of one app, and carrying at least `tags`)."""
        environment = config.environment_name()
        backend = await connect(environment)
        found = await backend.sandbox_list(
            environment, {"app_id": app_id, "tags": dict(tags or {})}
        )
        for info in found:
            yield Sandbox._handle(environment, info)

    @dual
    async def hydrate(self, client: Any = None) -> Sandbox:
        return self

    # -- tags -----------------------------------------------------------------------------------

    @dual
    async def set_tags(self, tags: Mapping[str, str], *, client: Any = None) -> None:
        if any(not isinstance(k, str) or not isinstance(v, str) for k, v in tags.items()):
            raise InvalidError("Sandbox tags must map str to str.")
        current = await self._live().call("get_tags")
        keep = {k: v for k, v in current.items() if k.startswith("modal.")}
        await self._live().call("set_tags", {**keep, **dict(tags)})

    @dual
    async def get_tags(self) -> dict[str, str]:
        tags = await self._live().call("get_tags")
        return {k: v for k, v in tags.items() if not k.startswith("modal.")}

    # -- lifecycle ------------------------------------------------------------------------------

    def _record(self, code: int | None, status: str) -> None:
        self._returncode, self._status = code, status

    @dual
    async def wait(self, raise_on_termination: bool = True) -> None:
        """Wait until the sandbox ends. Raises `SandboxTimeoutError` if its timeout ended it and
        `SandboxTerminatedError` if it was terminated, unless `raise_on_termination=False`."""
        while True:
            code, status = await self._live().call("wait", WAIT_POLL_S)
            if code is not None:
                break
        self._record(code, status)
        if raise_on_termination and status == "timeout":
            raise SandboxTimeoutError(f"Sandbox {self.object_id} ran past its timeout.")
        if raise_on_termination and status == "terminated":
            raise SandboxTerminatedError(f"Sandbox {self.object_id} was terminated.")

    @dual
    async def poll(self) -> int | None:
        """The exit code if the sandbox has ended, else None."""
        code, status = await self._live().call("wait", 0)
        if code is not None:
            self._record(code, status)
        return code

    @property
    def returncode(self) -> int | None:
        """The exit code once `wait()` or `poll()` saw the sandbox end, else None."""
        return self._returncode

    @dual
    async def terminate(self, *, wait: bool = False) -> int | None:
        """Stop the sandbox (a no-op if it has already ended). With `wait=True`, returns its exit
        code once it has stopped."""
        await self._live().call("terminate")
        if wait:
            code, status = await self._live().call("wait", WAIT_POLL_S)
            self._record(code, status)
            return code
        return None

    @dual
    async def detach(self) -> None:
        """Drop this handle (the sandbox keeps running); later calls on it raise."""
        self._detached = True

    @dual
    async def wait_until_ready(self, *, timeout: int = 300) -> None:
        from .probe import wait_ready

        await wait_ready(self, self._probe, timeout)

    # -- processes ------------------------------------------------------------------------------

    def _entrypoint(self) -> ContainerProcess[Any]:
        if self._entry is None:
            self._entry = ContainerProcess(ENTRYPOINT, self._ref)
        return self._entry

    @property
    def stdout(self) -> StreamReader[str]:
        return self._entrypoint().stdout

    @property
    def stderr(self) -> StreamReader[str]:
        return self._entrypoint().stderr

    @property
    def stdin(self) -> StreamWriter:
        return self._entrypoint().stdin

    @dual
    async def exec(
        self,
        *args: str,
        stdout: Any = None,
        stderr: Any = None,
        timeout: int | None = None,
        workdir: str | None = None,
        env: Mapping[str, str | None] | None = None,
        secrets: Sequence[Any] | None = None,
        text: bool = True,
        bufsize: int = -1,
        pty: bool = False,
        _pty_info: Any = None,
        pty_info: Any = None,
    ) -> ContainerProcess[Any]:
        """Run a command in the sandbox; returns its `ContainerProcess` once it started."""
        if not args:
            raise InvalidError("`Sandbox.exec` needs a command, e.g. `sb.exec('ls', '-l')`.")
        for arg in args:
            if not isinstance(arg, str):
                raise InvalidError(f"`Sandbox.exec` arguments must be strings, not {arg!r}.")
            if "\x00" in arg:
                raise InvalidError("`Sandbox.exec` arguments cannot contain NUL characters.")
        info = pty_info if pty_info is not None else _pty_info
        terminal = _terminal(info) if (pty or info is not None) else None
        if bufsize not in (-1, 1):
            raise InvalidError("`bufsize` must be -1 (buffered) or 1 (line-buffered).")
        if bufsize == 1 and not text:
            raise InvalidError("`bufsize=1` (line-buffered) needs `text=True`.")
        out, err = stream_kind(stdout), stream_kind(stderr)
        work = _abs_path(workdir, "workdir") if workdir is not None else None
        xid = await self._live().call(
            "exec",
            list(args),
            env={**(terminal[1] if terminal else {}), **_env(env, secrets)},
            workdir=work,
            timeout=_positive(timeout, "timeout"),
            stdout="devnull" if out == "devnull" else "pipe",
            stderr="devnull" if err == "devnull" else "pipe",
            pty=terminal[0] if terminal else None,
        )
        return ContainerProcess(xid, self._ref, stdout=out, stderr=err, text=text)

    # -- files ----------------------------------------------------------------------------------

    @dual
    async def open(self, path: str, mode: str = "r") -> FileIO[Any]:
        """Open a file inside the sandbox (alpha in Modal): returns a `FileIO`."""
        return await FileIO.create(path, mode, self._live())

    @dual
    async def ls(self, path: str) -> builtins.list[str]:
        return await self._live().call("ls", path)  # type: ignore[no-any-return]

    @dual
    async def mkdir(self, path: str, parents: bool = False) -> None:
        await self._live().call("mkdir", path, parents)

    @dual
    async def rm(self, path: str, recursive: bool = False) -> None:
        await self._live().call("rm", path, recursive)

    @dual
    async def watch(
        self,
        path: str,
        filter: builtins.list[FileWatchEventType] | None = None,
        recursive: bool | None = None,
        timeout: int | None = None,
    ) -> AsyncIterator[FileWatchEvent]:
        """Changes under `path` inside the sandbox as they happen (`FileWatchEvent`s), until
        `timeout` seconds pass or the sandbox ends."""
        async for event in watch_events(self._live(), path, filter, bool(recursive), timeout):
            yield event

    # -- not yet --------------------------------------------------------------------------------

    @dual
    async def tunnels(self, timeout: int = 50) -> dict[int, Tunnel]:
        """The sandbox's tunnels (its `encrypted_ports`, `h2_ports`, `unencrypted_ports`), keyed
        by the port inside the sandbox."""
        info = await self._live().call("describe")
        if info.get("status") != "running":
            raise SandboxTerminatedError(f"Sandbox {self.object_id} has finished.")
        return tunnels_of(info)

    @dual
    async def reload_volumes(self, *, timeout: int = 55) -> None:
        """Bring the sandbox's volumes to their latest committed versions."""
        await self._live().call("reload_volumes")

    @dual
    async def snapshot_filesystem(self, timeout: int = 55, *, ttl: int = 2592000) -> Any:
        """An `Image` with the files the sandbox's code wrote (its system directories, volumes
        and special files excepted): pass it as `image=` to a new sandbox. The files are kept in
        a temporary directory of this process."""
        from .image import Image

        data: bytes = await self._live().call("snapshot")
        target = await asyncio.get_running_loop().run_in_executor(None, _extract_snapshot, data)
        return Image.debian_slim().add_local_dir(target, "/")

    @dual
    async def snapshot_directory(
        self,
        path: str,
        *,
        timeout: int = 55,
        ttl: int = 2592000,
        _experimental_encryption_key: Any = None,
    ) -> Any:
        raise UnimplementedError("`Sandbox.snapshot_directory` is not supported yet.")

    @dual
    async def mount_image(
        self, path: str, image: Any, *, _experimental_encryption_key: Any = None
    ) -> None:
        raise UnimplementedError("`Sandbox.mount_image` is not supported yet.")

    @dual
    async def unmount_image(self, path: str) -> None:
        raise UnimplementedError("`Sandbox.unmount_image` is not supported yet.")

    @dual
    async def create_connect_token(self, user_metadata: Any = None, port: int = 8080) -> Any:
        raise UnimplementedError("`Sandbox.create_connect_token` is a Modal platform feature.")

    @dual
    async def get_dashboard_url(self) -> str:
        raise UnimplementedError("Sandboxes have no dashboard on Ray.")

    @property
    def logs(self) -> Any:
        raise UnimplementedError("`Sandbox.logs` is not supported yet; read `stdout`/`stderr`.")

    @property
    def filesystem(self) -> SandboxFilesystem:
        """Whole-file operations on the sandbox: `read_bytes`, `write_text`, `copy_to_local`..."""
        return SandboxFilesystem(self._live())


Sandbox.__module__ = "modal.sandbox"

__all__ = ["Sandbox"]
