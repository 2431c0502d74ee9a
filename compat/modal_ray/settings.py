"""The user's settings: every environment variable modal-ray reads, validated in one place.

Role: `Settings` (pydantic-settings) declares each variable once, with its type, default and a
docstring; `current()` returns the settings of the environment as it is now. Nothing else in
modal-ray reads a `MODAL_RAY_*` variable (`docs/operations.md`, "Configuration", documents each
one; `tests/unit/test_settings.py` checks both). Variables that modal-ray itself sets for its
workers are internal and live in `modal_ray.config` as named constants.

Invariants:
- Read at call time: a process that changes its environment (a test's `monkeypatch`, a worker
  that sets an input's `env=`) sees the change on the next read. The parsed object is cached
  against the raw values of the variables it reads, so a read costs a few dictionary lookups.
- A bad value raises `modal.exception.InvalidError` naming the variable, the value and what is
  expected, on the first read of any setting.
- Empty values count as unset. Names are case-sensitive, as the environment is.
- Defaults that depend on the machine (`~`, `$XDG_CACHE_HOME`) are left `None` here and worked
  out by the reader (`modal_ray.config`), so that the cache key stays the variables above.

This module imports pydantic; `modal_ray.config` imports it on first use, so `import modal`
stays light.
"""

from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from modal_ray.exception import InvalidError

__all__ = ["ENV_NAMES", "Settings", "current", "env_names"]

ENVIRONMENT_NAME_RULE = "up to 64 letters, digits, '-', '_' or '.'"


def valid_environment_name(name: str) -> bool:
    return len(name) <= 64 and name.replace("-", "").replace("_", "").replace(".", "").isalnum()


def _setting(default: Any, env: str | tuple[str, ...], expect: str, **constraints: Any) -> Any:
    """A field read from `env` (the first set one, for several); `expect` completes
    "<VARIABLE> must be ..." in the error for a bad value."""
    names = (env,) if isinstance(env, str) else env
    alias: str | AliasChoices = names[0] if len(names) == 1 else AliasChoices(*names)
    return Field(
        default,
        validation_alias=alias,
        json_schema_extra={"env": list(names), "expect": expect},
        **constraints,
    )


class Settings(BaseSettings):
    """modal-ray's settings, from the environment of the process that reads them."""

    model_config = SettingsConfigDict(
        case_sensitive=True,
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
        use_attribute_docstrings=True,
    )

    # -- the cluster ----------------------------------------------------------------------------

    address: str | None = _setting(
        None, ("MODAL_RAY_ADDRESS", "RAY_ADDRESS"), "a Ray address (`host:port`, `ray://...`)"
    )
    """Ray cluster to connect to (`MODAL_RAY_ADDRESS`, else Ray's own `RAY_ADDRESS`). Unset: an
    embedded Ray private to the process."""

    connect_timeout: float = _setting(
        30.0, "MODAL_RAY_CONNECT_TIMEOUT", "a positive number of seconds", gt=0
    )
    """Seconds the cluster at `address` has to answer (name resolved, TCP connection, gRPC
    handshake) before the run fails with `ConnectionError`."""

    environment: str = _setting(
        "main", "MODAL_ENVIRONMENT", f"an environment name: {ENVIRONMENT_NAME_RULE}"
    )
    """Modal environment; Ray namespace `modal-<environment>`."""

    state: Path | None = _setting(None, "MODAL_RAY_STATE", "a directory path")
    """State store root (named Secrets, Dict and Queue files). Unset: `~/.modal-ray`."""

    num_cpus: float | None = _setting(
        None, "MODAL_RAY_NUM_CPUS", "a number of CPUs (0 or more)", ge=0
    )
    """Logical CPUs of the embedded Ray. Unset: detected."""

    num_gpus: float | None = _setting(
        None, "MODAL_RAY_NUM_GPUS", "a number of GPUs (0 or more)", ge=0
    )
    """Logical GPUs of the embedded Ray. Unset: detected."""

    # -- functions ------------------------------------------------------------------------------

    packages: Literal["install", "check"] = _setting(
        "install", "MODAL_RAY_PACKAGES", "'install' or 'check'"
    )
    """`install`: image packages go into a Ray `runtime_env` (`pip`/`uv`); `check`: verify that
    the workers already have them and fail with `ImageBuildError` naming what is missing."""

    check_feasible: bool = _setting(True, "MODAL_RAY_CHECK_FEASIBLE", "1 or 0")
    """Refuse a resource request no live node can satisfy instead of letting it pend; `0` on
    autoscaling clusters where nodes appear on demand."""

    cluster_share_nodes: bool = _setting(False, "MODAL_RAY_CLUSTER_SHARE_NODES", "1 or 0")
    """`1`: the ranks of a clustered function may share nodes when the cluster has fewer
    suitable nodes than ranks (a single machine, tests), with a warning. `0`: one node per rank."""

    cluster_placement_timeout: float = _setting(
        300.0, "MODAL_RAY_CLUSTER_PLACEMENT_TIMEOUT", "a positive number of seconds", gt=0
    )
    """Seconds a call to a clustered function waits for all its ranks to be placed and started
    on a busy cluster before it fails with `ResourceExhaustedError`."""

    gpu_fallback: Literal["none", "cpu"] = _setting(
        "none", "MODAL_RAY_GPU_FALLBACK", "'none' or 'cpu'"
    )
    """`cpu`: a `gpu=` request that no live node of the cluster can provide (a GPU type it does
    not have, or any GPU on a CPU-only machine) runs without a GPU, with a warning once per GPU
    spelling; `none`: such a request fails with `InvalidError` (with `MODAL_RAY_CHECK_FEASIBLE`)
    or waits for a node that has it."""

    ship_source: bool | None = _setting(None, "MODAL_RAY_SHIP_SOURCE", "1 or 0")
    """`1`: always ship the function's package or file as `py_modules`; `0`: never. Unset: only
    on a cluster reached by address."""

    worker_fs: Literal["shared", "private"] = _setting(
        "shared",
        "MODAL_RAY_WORKER_FS",
        "`shared` (Ray workers are processes of the machine, the default) or `private` (each"
        " worker runs in its own disposable container)",
    )
    """Read by each worker (its node's environment or the image's `env`). `shared`: workers are
    processes of the machine, and paths that modal-ray did not create are never replaced;
    `private`: each worker has a disposable filesystem of its own (a KubeRay pod), and paths
    are replaced as Modal replaces them in a container."""

    traceback: bool = _setting(False, "MODAL_TRACEBACK", "1 or 0")
    """`1`: the CLI and remote errors show full tracebacks, modal-ray's frames included."""

    # -- Dicts and Queues -----------------------------------------------------------------------

    store_sync: Literal["normal", "full"] = _setting(
        "normal", "MODAL_RAY_STORE_SYNC", "'normal' or 'full' (SQLite's `synchronous`)"
    )
    """SQLite `synchronous` for Dict and Queue files opened from now on: `normal` survives a
    crash of a process or of Ray; `full` (an fsync per commit) also a power loss."""

    dict_ttl: float = _setting(604800.0, "MODAL_RAY_DICT_TTL", "a positive number of seconds", gt=0)
    """Seconds a Dict entry lives without reads or writes (Modal's 7 days), for Dict servers
    started from now on."""

    # -- Volumes and bucket mounts ---------------------------------------------------------------

    volumes: str | None = _setting(None, "MODAL_RAY_VOLUMES", "an fsspec URL or a path")
    """Read by the client. fsspec URL of the volume store: a local directory, a shared
    filesystem path, `s3://bucket/prefix`. Unset: `<state>/volumes`."""

    volumes_options: Annotated[dict[str, Any], NoDecode] = _setting(
        {}, "MODAL_RAY_VOLUMES_OPTIONS", "a JSON object of fsspec options"
    )
    """Read by the client. JSON object of fsspec options for the store, e.g.
    `{"endpoint_url": "http://minio:9000", "key": "...", "secret": "..."}`."""

    volume_cache: Path | None = _setting(None, "MODAL_RAY_VOLUME_CACHE", "a directory path")
    """Read by each worker. Node-local directory for working copies, views and bucket mirrors.
    Unset: `$XDG_CACHE_HOME/modal-ray/volumes` (`~/.cache/...`)."""

    volume_fd: int = _setting(
        1021, "MODAL_RAY_VOLUME_FD", "an unused file descriptor number, 3 or more", ge=3
    )
    """Read by each worker. File descriptor each mounting process keeps open on its view (must
    be unused and below `ulimit -n`)."""

    volume_idle_s: float = _setting(
        60.0, "MODAL_RAY_VOLUME_IDLE_S", "a number of seconds (0 or more)", ge=0
    )
    """Read by each worker. A task-backed function's working copy unused for this long is
    dropped (its changes were committed); the next input mounts the latest version."""

    cbm_mode: Literal["auto", "fuse", "copy"] = _setting(
        "auto", "MODAL_RAY_CBM_MODE", "auto, fuse or copy"
    )
    """Read by each worker. CloudBucketMount: `auto` (FUSE if usable, else a mirror), `fuse`
    (fail without FUSE), `copy` (always a mirror)."""

    cbm_max_bytes: int = _setting(
        50 * 2**30, "MODAL_RAY_CBM_MAX_BYTES", "a positive number of bytes", gt=0
    )
    """Read by each worker. Most bytes one bucket mirror sync may download."""

    # -- Sandboxes --------------------------------------------------------------------------------

    sandbox_isolation: Literal["bwrap", "none"] = _setting(
        "bwrap", "MODAL_RAY_SANDBOX_ISOLATION", "`bwrap` (the default) or `none`"
    )
    """Read on each node that hosts sandboxes. `bwrap`: every sandbox runs under bubblewrap, and
    a node where bubblewrap is missing or cannot make namespaces refuses sandboxes; `none`: run
    them as plain processes of the node, UNISOLATED, on purpose."""

    sandbox_network: Literal["slirp4netns", "host"] = _setting(
        "slirp4netns", "MODAL_RAY_SANDBOX_NETWORK", "`slirp4netns` (the default) or `host`"
    )
    """Read on each node that hosts sandboxes (isolated ones). `slirp4netns`: every sandbox has
    its own network namespace; one without `block_network` reaches outside through slirp4netns,
    which cannot reach the node's loopback, and routes inside refuse the cluster's node
    addresses; a node without slirp4netns refuses such sandboxes. `host`: sandboxes without
    `block_network` share the node's network namespace (its loopback services and Ray's ports
    included), on purpose."""

    sandbox_limits: Literal["on", "off"] = _setting(
        "on", "MODAL_RAY_SANDBOX_LIMITS", "`on` (the default) or `off`"
    )
    """Read on each node that hosts sandboxes. `on`: a sandbox with a hard `cpu=`/`memory=`
    limit gets cgroups, and is refused where the node has no writable cgroup hierarchy; `off`:
    accept such sandboxes without enforcing their limits."""

    tunnel_host: str | None = _setting(None, "MODAL_RAY_TUNNEL_HOST", "a host name or address")
    """Read on each node. Address tunnels (`encrypted_ports`, `modal.forward`) listen on and
    report. Unset: the node's primary address."""

    @field_validator("*", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator(
        "packages",
        "worker_fs",
        "store_sync",
        "cbm_mode",
        "sandbox_isolation",
        "sandbox_network",
        "sandbox_limits",
        mode="before",
    )
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("connect_timeout", "dict_ttl", "volume_idle_s")
    @classmethod
    def _finite(cls, value: float) -> float:
        if math.isinf(value) or math.isnan(value):
            raise ValueError("not a finite number")
        return value

    @field_validator("environment")
    @classmethod
    def _environment(cls, value: str) -> str:
        if not valid_environment_name(value):
            raise ValueError("not an environment name")
        return value

    @field_validator("state", "volume_cache")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("volumes_options", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
        return value


def env_names(field: str) -> tuple[str, ...]:
    """The variables a field is read from, in order of precedence."""
    extra = Settings.model_fields[field].json_schema_extra
    assert isinstance(extra, dict)
    return tuple(extra["env"])  # type: ignore[arg-type]


ENV_NAMES: tuple[str, ...] = tuple(
    name for field in Settings.model_fields for name in env_names(field)
)

_cache: tuple[tuple[str | None, ...], Settings] | None = None
_lock = threading.Lock()


def current() -> Settings:
    """The settings of this process's environment now."""
    global _cache
    key = tuple(map(os.environ.get, ENV_NAMES))
    cached = _cache
    if cached is not None and cached[0] == key:
        return cached[1]
    with _lock:
        try:
            settings = Settings()
        except ValidationError as exc:
            raise _invalid(exc) from None
        _cache = (key, settings)
    return settings


def _invalid(exc: ValidationError) -> InvalidError:
    """The first bad value, as "<VARIABLE> must be <expected>, not <value> (<why>)"."""
    error = exc.errors()[0]
    loc = str(error["loc"][0]) if error["loc"] else ""
    field = next(
        (f for f in Settings.model_fields if f == loc or loc in env_names(f)),
        None,
    )
    if field is None:
        return InvalidError(f"Invalid modal-ray setting: {exc}")
    names = env_names(field)
    name = next((n for n in names if os.environ.get(n)), names[0])
    extra = Settings.model_fields[field].json_schema_extra
    assert isinstance(extra, dict)
    why = str(error.get("msg", "")).removeprefix("Value error, ")
    return InvalidError(
        f"{name} must be {extra['expect']}, not {os.environ.get(name)!r} ({why})."
        " Fix or unset it (docs/operations.md, Configuration)."
    )
