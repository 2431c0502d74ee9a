"""The options of `@app.function(...)`: validated at decoration, compiled when the app runs.

Every keyword of Modal 1.6.4's `App.function` is accepted. What maps to Ray is honoured
(resources, timeout, retries, secrets, env, image, max_containers, single-use containers); what is
meaningless off Modal (`region=`, `cloud=`, `proxy=`, ...) warns once.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from modal_ray.exception import InvalidError

from . import config, naming
from .mapping import container_slots
from .records import (
    AppIdentity,
    ClassRecord,
    FunctionRecord,
    MethodSpec,
    ParameterSpec,
    PoolSpec,
)
from .resources import container_resources, parse_resources
from .runtime.container import ContainerSpec
from .runtime.worker import Invocation
from .secret import Secret, merge_secrets
from .specs import FunctionSpec, Resources, RetryPolicy, ServiceSpec
from .warn import deprecation, warn_once

if TYPE_CHECKING:
    from .run_context import RunContext

MAX_TIMEOUT = 24 * 60 * 60

# Parameters that mean nothing on a Ray cluster: accepted, with one warning each.
_CLOUD_ONLY = {
    "cloud": "Ray places work on the cluster's own nodes",
    "region": "Ray places work on the cluster's own nodes",
    "routing_region": "requests are routed by the cluster itself",
    "proxy": "egress goes through the cluster's own network",
    "nonpreemptible": "preemption depends on the cluster's nodes",
    "enable_memory_snapshot": (
        "memory snapshots are a Modal platform feature; functions start normally"
    ),
    "block_network": "Ray tasks cannot be cut off from the network (sandboxes can)",
    "restrict_modal_access": "it is not a security boundary on Ray",
    "ephemeral_disk": "Ray does not reserve disk per task",
    "startup_timeout": "Ray starts workers itself",
}


def _check_schedule(schedule: Any, raw_f: Callable[..., Any]) -> Any:
    """`schedule=` takes a `modal.Period` / `modal.Cron`, on a function callable with no
    arguments (a scheduled call passes none, as on Modal); see `schedules`."""
    if schedule is not None:
        from .schedules import spec_of

        spec_of(schedule)
        try:
            inspect.signature(raw_f).bind()
        except TypeError:
            raise InvalidError(
                f"Function {getattr(raw_f, '__qualname__', raw_f)!r} has a schedule, so it must"
                " be callable with no arguments: give its parameters defaults."
            ) from None
        except ValueError:  # no signature to check (a builtin)
            pass
    return schedule


def _check_timeout(timeout: Any) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise InvalidError(f"Invalid timeout {timeout!r}: expected seconds as a number.")
    if not 0 < timeout <= MAX_TIMEOUT:
        raise InvalidError(
            f"Invalid timeout {timeout!r}: it must be more than 0 and at most 24 hours."
        )
    return float(timeout)


def pool_sizing(max_inputs: int, batch: int | None, target_inputs: int | None) -> tuple[int, float]:
    """(max_ongoing, target_ongoing) of a container pool.

    Serve's router backs off (and throughput collapses) when every replica is at
    `max_ongoing_requests`, so a container accepts more inputs than it runs at once and holds
    the extra ones in a FIFO (`Container._slots`). Batches want a deep queue (the batcher fills
    from it); other inputs only a short one, so that new replicas get work. A map keeps
    `container_slots` inputs in flight per container (one batch filling while another runs); a
    container must accept them, and the autoscaler counts them as full.
    """
    slots = container_slots(max_inputs, batch)
    max_ongoing = max(64, 8 * batch, 2 * slots) if batch else 2 * max_inputs
    return max_ongoing, float(target_inputs or slots)


def to_retry_policy(retries: Any) -> RetryPolicy | None:
    if retries is None:
        return None
    if isinstance(retries, bool):
        raise InvalidError("`retries=` takes an int or modal.Retries, not a bool.")
    if isinstance(retries, int):
        # Modal: an int means that many retries with a fixed 1 s delay.
        return RetryPolicy(max_retries=retries, backoff_coefficient=1.0, initial_delay=1.0)
    policy = getattr(retries, "_policy", None)
    if isinstance(policy, RetryPolicy):
        return policy
    raise InvalidError(f"`retries=` takes an int or modal.Retries, not {type(retries).__name__}.")


@dataclass(frozen=True)
class FunctionOptions:
    """Validated decorator options; `override()` gives `with_options` its copy."""

    image: Any = None
    env: Mapping[str, str | None] | None = None
    secrets: tuple[Secret, ...] = ()
    resources: Resources = field(default_factory=Resources)
    gpu: Any = None
    cpu: Any = None
    memory: Any = None
    timeout: float = 300.0
    retries: RetryPolicy | None = None
    max_containers: int | None = None
    min_containers: int | None = None
    buffer_containers: int | None = None
    scaledown_window: int | None = None
    max_calls: int | None = None
    volumes: Mapping[Any, Any] = field(default_factory=dict)
    network_file_systems: Mapping[Any, Any] = field(default_factory=dict)
    schedule: Any = None
    serialized: bool = False
    include_source: bool | None = None
    is_generator: bool = False
    is_async: bool = False
    max_inputs_concurrent: int | None = None
    target_inputs: int | None = None
    batch_max_size: int | None = None
    batch_wait_ms: int | None = None
    # A web endpoint (`serve_adapters.web.WebSpec`) from `@modal.fastapi_endpoint` & co.
    web: Any = None
    cluster_size: int | None = None  # `@clustered(size=...)` (see `clustered`)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_decorator(cls, raw_f: Callable[..., Any], kwargs: dict[str, Any]) -> FunctionOptions:
        kw = dict(kwargs)
        _apply_deprecated(kw)
        for name, why in _CLOUD_ONLY.items():
            value = kw.pop(name, None)
            if value not in (None, False, {}, [], ()):
                warn_once(f"param:{name}", f"`{name}=` has no effect on Ray: {why}.")
        is_generator = kw.pop("is_generator", None)
        if is_generator is None:
            is_generator = inspect.isgeneratorfunction(raw_f) or inspect.isasyncgenfunction(raw_f)
        secrets = kw.pop("secrets", None) or ()
        if isinstance(secrets, Secret) or not isinstance(secrets, Sequence | set | frozenset):
            raise InvalidError("`secrets=` takes a list of modal.Secret objects.")
        for s in secrets:
            if not isinstance(s, Secret):
                raise InvalidError(
                    f"`secrets=` takes modal.Secret objects, not {type(s).__name__}."
                )
        env = kw.pop("env", None)
        if env is not None and (
            not isinstance(env, Mapping)
            or any(
                not isinstance(k, str) or (v is not None and not isinstance(v, str))
                for k, v in env.items()
            )
        ):
            raise InvalidError("`env=` takes a dict of str to str (or None).")
        cpu, memory, gpu = kw.pop("cpu", None), kw.pop("memory", None), kw.pop("gpu", None)
        resources = parse_resources(cpu=cpu, memory=memory, gpu=gpu)
        max_containers = kw.pop("max_containers", None)
        if max_containers is not None and (
            not isinstance(max_containers, int) or max_containers < 1
        ):
            raise InvalidError(
                f"Invalid max_containers {max_containers!r}: must be a positive int."
            )
        max_calls = kw.pop("max_inputs", None)
        if kw.pop("single_use_containers", False):
            max_calls = 1
        if max_calls is not None and (not isinstance(max_calls, int) or max_calls < 1):
            raise InvalidError(f"Invalid max_inputs {max_calls!r}: must be a positive int.")
        opts = cls(
            image=kw.pop("image", None),
            env=env,
            secrets=tuple(secrets),
            resources=resources,
            gpu=gpu,
            cpu=cpu,
            memory=memory,
            timeout=_check_timeout(kw.pop("timeout", 300)),
            retries=to_retry_policy(kw.pop("retries", None)),
            max_containers=max_containers,
            min_containers=kw.pop("min_containers", None),
            buffer_containers=kw.pop("buffer_containers", None),
            scaledown_window=kw.pop("scaledown_window", None),
            max_calls=max_calls,
            volumes=kw.pop("volumes", None) or {},
            network_file_systems=kw.pop("network_file_systems", None) or {},
            schedule=_check_schedule(kw.pop("schedule", None), raw_f),
            serialized=bool(kw.pop("serialized", False)),
            include_source=kw.pop("include_source", None),
            is_generator=bool(is_generator),
            is_async=inspect.iscoroutinefunction(raw_f),
            max_inputs_concurrent=kw.pop("max_inputs_concurrent", None),
            target_inputs=kw.pop("target_inputs", None),
            batch_max_size=kw.pop("batch_max_size", None),
            batch_wait_ms=kw.pop("batch_wait_ms", None),
            web=kw.pop("web", None),
            cluster_size=kw.pop("cluster_size", None),
        )
        _check_clustered(raw_f, opts, kw.get("name"))
        for name in ("i6pn", "experimental_options", "_experimental_restrict_output", "name"):
            kw.pop(name, None)
        if kw:
            raise InvalidError(f"Unknown @app.function options: {', '.join(sorted(kw))}")
        return opts

    def override(self, **kw: Any) -> FunctionOptions:
        """`with_options(...)`: scalars replace, resources are re-parsed."""
        changes: dict[str, Any] = {}
        if {"cpu", "memory", "gpu"} & kw.keys():
            cpu = kw.pop("cpu", None) or self.cpu
            memory = kw.pop("memory", None) or self.memory
            gpu = kw.pop("gpu", None) or self.gpu
            changes.update(
                cpu=cpu,
                memory=memory,
                gpu=gpu,
                resources=parse_resources(cpu=cpu, memory=memory, gpu=gpu),
            )
        _apply_deprecated(kw)
        for name, why in _CLOUD_ONLY.items():
            if kw.pop(name, None) not in (None, False):
                warn_once(f"param:{name}", f"`{name}=` has no effect on Ray: {why}.")
        if "timeout" in kw:
            t = kw.pop("timeout")
            if t is not None:
                changes["timeout"] = _check_timeout(t)
        if "retries" in kw:
            r = kw.pop("retries")
            if r is not None:
                changes["retries"] = to_retry_policy(r)
        if "secrets" in kw:
            s = kw.pop("secrets")
            if s is not None:
                changes["secrets"] = tuple(s)
        for key in list(kw):
            value = kw.pop(key)
            if value is None or value == {}:
                continue
            if key not in self.__dataclass_fields__:
                raise InvalidError(f"Unknown option {key!r} for `with_options`.")
            changes[key] = value
        return replace(self, **changes)

    # -- compilation when the app runs ---------------------------------------------------------

    def check_supported(self, tag: str) -> None:
        """Nothing left to refuse here; kept as the one place for such checks."""

    def mounts(self, ctx: RunContext) -> Any:
        """The picklable mount set for `volumes=` / `network_file_systems=` (app's first)."""
        volumes = dict(ctx.volumes)
        volumes.update(self.volumes)
        if not volumes and not self.network_file_systems:
            return None
        from modal_ray.volumes import prepare_mounts

        return prepare_mounts(volumes, dict(self.network_file_systems), ctx.environment)

    def needs_container(self) -> bool:
        """Container semantics (warm state, concurrency, batching, a warm floor) need Serve."""
        return bool(
            self.max_inputs_concurrent
            or self.batch_max_size
            or self.min_containers
            or self.web is not None  # a web function always runs on a container pool
        )

    def _environment(self, ctx: RunContext) -> tuple[Any, dict[str, Any], dict[str, str]]:
        """(image, runtime_env, env) shared by tasks and containers."""
        from .image import default_image

        image = self.image or ctx.image or default_image()
        image._emit_warnings()
        runtime_env = dict(image._runtime_env())
        secrets = list(ctx.secrets)
        secrets += list(self.secrets)
        env = merge_secrets(secrets)
        env.update({k: v for k, v in (self.env or {}).items() if v is not None})
        if ctx.app_id:
            env[config.APP_ID_ENV] = ctx.app_id
        return image, runtime_env, env

    def build_container(
        self,
        *,
        name: str,
        tag: str,
        target: Any,
        is_class: bool,
        params: Mapping[str, Any],
        ctx: RunContext,
        batched_method: str | None = None,
    ) -> tuple[ServiceSpec, ContainerSpec]:
        """The Serve pool and the per-replica container for a class parameter set or function."""
        self.check_supported(tag)
        pool = self._pool(
            name, tag, target, is_class, params, ctx, batched_method, self._environment(ctx)
        )
        return pool.service, pool.container

    def _pool(
        self,
        name: str,
        tag: str,
        target: Any,
        is_class: bool,
        params: Mapping[str, Any],
        ctx: RunContext,
        batched_method: str | None,
        environment: tuple[Any, dict[str, Any], dict[str, str]],
    ) -> PoolSpec:
        image, runtime_env, env = environment
        max_inputs = self.max_inputs_concurrent or 1
        max_ongoing, target_ongoing = pool_sizing(
            max_inputs, self.batch_max_size, self.target_inputs
        )
        if self.buffer_containers:
            warn_once(
                "scaling:buffer_containers",
                "`buffer_containers=` has no exact Ray Serve equivalent; the pool scales on load.",
            )
        if self.max_calls:
            warn_once(
                "scaling:max_inputs-serve",
                "`max_inputs=` / `single_use_containers=` apply to task-backed functions only;"
                " container pools keep their replicas.",
            )
        service = ServiceSpec(
            name=name,
            tag=tag,
            resources=container_resources(self.resources, self.cpu),
            runtime_env=runtime_env,
            min_replicas=self.min_containers or 0,
            max_replicas=self.max_containers or 100,
            max_ongoing=max_ongoing,
            target_ongoing=target_ongoing,
            scaledown_window=float(self.scaledown_window or 60),
            include_source=self.include_source if self.include_source is not None else True,
        )
        container = ContainerSpec(
            tag=tag,
            target=target,
            is_class=is_class,
            params=dict(params),
            environment=ctx.environment,
            env=env,
            setup=image._worker_setup(),
            mounts=self.mounts(ctx),
            timeout=self.timeout,
            max_inputs=max_inputs,
            batch_max_size=self.batch_max_size,
            batch_wait_ms=self.batch_wait_ms or 0,
            batched_method=batched_method,
        )
        return PoolSpec(service, container)

    def build(
        self,
        tag: str,
        raw_f: Callable[..., Any],
        target: Any,
        ctx: RunContext,
        served: bool = False,
    ) -> tuple[FunctionSpec, Invocation]:
        """The spec and invocation of a task-backed function."""
        self.check_supported(tag)
        self._warn_pool_options(served)
        image, runtime_env, env = self._environment(ctx)
        return self._spec(tag, ctx, runtime_env), self._invocation(tag, target, ctx, image, env)

    def _warn_pool_options(self, served: bool) -> None:
        for name in ("buffer_containers", "scaledown_window"):
            if getattr(self, name) and not (served or self.needs_container()):
                warn_once(
                    f"scaling:{name}",
                    f"`{name}=` applies to warm container pools; a plain function runs each"
                    " input as a Ray task (add `min_containers=` or `@modal.concurrent` for a"
                    " pool).",
                )

    def _spec(self, tag: str, ctx: RunContext, runtime_env: Mapping[str, Any]) -> FunctionSpec:
        return FunctionSpec(
            tag=tag,
            app_name=ctx.app_name,
            is_generator=self.is_generator,
            is_async=self.is_async,
            timeout=self.timeout,
            retries=self.retries,
            resources=self.resources,
            max_containers=self.max_containers,
            runtime_env=runtime_env,
            include_source=self.include_source if self.include_source is not None else True,
            serialized=self.serialized,
            max_calls=self.max_calls,
            cluster_size=self.cluster_size,
        )

    def _invocation(
        self, tag: str, target: Any, ctx: RunContext, image: Any, env: Mapping[str, str]
    ) -> Invocation:
        return Invocation(
            tag=tag,
            target=target,
            timeout=self.timeout,
            environment=ctx.environment,
            env=env,
            setup=image._worker_setup(),
            mounts=self.mounts(ctx),
            is_async=self.is_async,
        )

    # -- records: compiled once per app run (see `records`) --------------------------------------

    def compile_function(self, tag: str, target: Any, ctx: RunContext) -> FunctionRecord:
        """The record of an `@app.function`: a task, or one container pool when it needs
        container semantics. The image is packed once, for what the function uses."""
        self.check_supported(tag)
        self._warn_pool_options(False)
        environment = self._environment(ctx)
        image, runtime_env, env = environment
        spec = self._spec(tag, ctx, runtime_env)
        app = AppIdentity(ctx.environment, ctx.app_id, ctx.app_name)
        if not self.needs_container():
            invocation = self._invocation(tag, target, ctx, image, env)
            return FunctionRecord(tag, app, spec, invocation=invocation)
        name = naming.pool_name(ctx.environment, ctx.app_id, tag, {}, "")
        batched = "__call__" if self.batch_max_size else None
        pool = self._pool(name, tag, target, False, {}, ctx, batched, environment)
        return FunctionRecord(tag, app, spec, pool=pool, web=self.web)

    def compile_class(
        self,
        tag: str,
        target: Any,
        ctx: RunContext,
        *,
        variant: str,
        methods: tuple[MethodSpec, ...],
        parameters: tuple[ParameterSpec, ...],
    ) -> ClassRecord:
        """The record of an `@app.cls`: one pool template for all its parameter sets, with the
        batching of its `@modal.batched` method if it has one. The image is packed once."""
        self.check_supported(tag)
        batched = next((m for m in methods if m.batch_max_size), None)
        options = self
        if batched is not None:
            options = replace(
                self, batch_max_size=batched.batch_max_size, batch_wait_ms=batched.batch_wait_ms
            )
        environment = options._environment(ctx)
        pool = options._pool(
            "",
            tag,
            target,
            True,
            {},
            ctx,
            batched.name if batched is not None else None,
            environment,
        )
        return ClassRecord(
            tag=tag,
            app=AppIdentity(ctx.environment, ctx.app_id, ctx.app_name),
            variant=variant,
            methods=methods,
            parameters=parameters,
            spec=self._spec(tag, ctx, environment[1]),
            pool=pool,
        )

    @classmethod
    def of_compiled(cls, spec: FunctionSpec, pool: PoolSpec | None) -> FunctionOptions:
        """The options of a compiled function or class, as far as calls, maps and
        `update_autoscaler` read them (an object rebuilt from a record has no others)."""
        scaling: dict[str, Any] = {}
        if pool is not None:
            scaling = {
                "min_containers": pool.service.min_replicas or None,
                "scaledown_window": int(pool.service.scaledown_window),
                "max_inputs_concurrent": pool.container.max_inputs,
                "batch_max_size": pool.container.batch_max_size,
                "batch_wait_ms": pool.container.batch_wait_ms,
            }
        return cls(
            resources=spec.resources,
            timeout=spec.timeout,
            retries=spec.retries,
            max_containers=spec.max_containers,
            max_calls=spec.max_calls,
            serialized=spec.serialized,
            include_source=spec.include_source,
            is_generator=spec.is_generator,
            is_async=spec.is_async,
            cluster_size=spec.cluster_size,
            **scaling,
        )


def _check_clustered(raw_f: Any, opts: FunctionOptions, name: Any) -> None:
    """`@clustered` functions run a gang per input; Modal classes cannot carry it (yet)."""
    from . import clustered

    if isinstance(raw_f, type):
        clustered.check_class(raw_f)
    if opts.cluster_size:
        clustered.check_function(str(name or getattr(raw_f, "__qualname__", "")), opts)


_DEPRECATED = {
    "keep_warm": "min_containers",
    "concurrency_limit": "max_containers",
    "container_idle_timeout": "scaledown_window",
    "_experimental_buffer_containers": "buffer_containers",
}


def _apply_deprecated(kw: dict[str, Any]) -> None:
    for old, new in _DEPRECATED.items():
        if old in kw:
            value = kw.pop(old)
            deprecation(f"param:{old}", f"`{old}=` is deprecated; use `{new}=` instead.")
            if value is not None and kw.get(new) is None:
                kw[new] = value
    if "allow_concurrent_inputs" in kw:
        value = kw.pop("allow_concurrent_inputs")
        deprecation(
            "param:allow_concurrent_inputs",
            "`allow_concurrent_inputs=` is deprecated;"
            " use the `@modal.concurrent(max_inputs=...)` decorator.",
        )
        if value:
            kw["max_inputs_concurrent"] = value
