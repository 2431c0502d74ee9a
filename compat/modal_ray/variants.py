"""Variants of a class rebuilt from a record (a deployed class looked up by name).

`with_options`, `with_concurrency` and `with_batching` on such a class cannot recompile it (its
code is not in this process), so they derive a new record from the deployed one: the same code,
image and parameter schema, the overridden options, and a variant name of its own, so that every
parameter set of the variant gets its own pool, independent of the deployed class's pools (as
`with_options` gives on Modal). The variant's pools are made on first call, under the
deployment's name: like its other pools they scale down when idle and are removed when the app
is redeployed or stopped.

Options are applied as `FunctionOptions.override` applies them to a class in the running app:
scalars replace, `cpu`/`memory`/`gpu` are re-parsed (a `gpu` not given keeps the deployed one),
`env` and `secrets` are added to the container's environment, `volumes` replace the class's
volumes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from modal_ray.exception import InvalidError

from .records import ClassRecord
from .resources import parse_resources
from .specs import Resources
from .warn import warn_once

__all__ = ["DerivedLookup", "derive_record"]


@dataclasses.dataclass(frozen=True)
class Derivation:
    """One `with_*` call: which one, its arguments, and the variant label it adds."""

    kind: str  # "options" | "concurrency" | "batching"
    arguments: tuple[tuple[str, Any], ...]
    label: str


def derive_record(record: ClassRecord, derivation: Derivation) -> ClassRecord:
    """The record of a variant of `record` (see the module docstring)."""
    from .function_options import _CLOUD_ONLY, _check_timeout, pool_sizing, to_retry_policy

    args = dict(derivation.arguments)
    spec, service, container = record.spec, record.pool.service, record.pool.container
    if derivation.kind == "options":
        for name, why in _CLOUD_ONLY.items():
            if args.pop(name, None) not in (None, False):
                warn_once(f"param:{name}", f"`{name}=` has no effect on Ray: {why}.")
        cpu, memory, gpu = args.pop("cpu", None), args.pop("memory", None), args.pop("gpu", None)
        if cpu is not None or memory is not None or gpu is not None:
            resources = _resources(spec.resources, cpu, memory, gpu)
            spec = replace(spec, resources=resources)
            # Without `cpu=` the container keeps the share it reserved when deployed.
            own = (
                resources
                if cpu is not None
                else replace(resources, num_cpus=service.resources.num_cpus)
            )
            service = replace(service, resources=own)
        if (timeout := args.pop("timeout", None)) is not None:
            seconds = _check_timeout(timeout)
            spec = replace(spec, timeout=seconds)
            container = replace(container, timeout=seconds)
        if (retries := args.pop("retries", None)) is not None:
            spec = replace(spec, retries=to_retry_policy(retries))
        if (max_containers := args.pop("max_containers", None)) is not None:
            spec = replace(spec, max_containers=max_containers)
            service = replace(service, max_replicas=max_containers)
        if (window := args.pop("scaledown_window", None)) is not None:
            service = replace(service, scaledown_window=float(window))
        if args.pop("buffer_containers", None):
            warn_once(
                "scaling:buffer_containers",
                "`buffer_containers=` has no exact Ray Serve equivalent; the pool scales on load.",
            )
        env = dict(container.env)
        if secrets := args.pop("secrets", None):
            from .secret import merge_secrets

            env.update(merge_secrets(list(secrets)))
        env.update({k: v for k, v in (args.pop("env", None) or {}).items() if v is not None})
        container = replace(container, env=env)
        if volumes := args.pop("volumes", None):
            from modal_ray.volumes import prepare_mounts

            container = replace(
                container, mounts=prepare_mounts(dict(volumes), {}, record.app.environment)
            )
        unknown = sorted(k for k, v in args.items() if v not in (None, {}, ()))
        if unknown:
            raise InvalidError(f"Unknown option {unknown[0]!r} for `with_options`.")
    elif derivation.kind == "concurrency":
        max_inputs = int(args["max_inputs"])
        max_ongoing, target = pool_sizing(
            max_inputs, container.batch_max_size, args["target_inputs"]
        )
        container = replace(container, max_inputs=max_inputs)
        service = replace(service, max_ongoing=max_ongoing, target_ongoing=target)
    elif derivation.kind == "batching":
        if not container.batch_max_size:
            raise InvalidError(
                f"Cls {record.tag!r} has no @modal.batched method: `with_batching` does not apply."
            )
        size, wait_ms = int(args["max_batch_size"]), int(args["wait_ms"])
        max_ongoing, target = pool_sizing(container.max_inputs, size, None)
        container = replace(container, batch_max_size=size, batch_wait_ms=wait_ms)
        service = replace(service, max_ongoing=max_ongoing, target_ongoing=target)
        methods = tuple(
            replace(m, batch_max_size=size, batch_wait_ms=wait_ms) if m.batch_max_size else m
            for m in record.methods
        )
        record = replace(record, methods=methods)
    else:  # pragma: no cover - the three callers above are the only ones
        raise AssertionError(derivation.kind)
    return replace(
        record,
        variant=f"{record.variant}|{derivation.label}",
        spec=spec,
        pool=replace(record.pool, service=service, container=container),
    )


def _resources(deployed: Resources, cpu: Any, memory: Any, gpu: Any) -> Resources:
    """The deployed request with `cpu` / `memory` / `gpu` replaced (each only where given)."""
    if cpu is None:
        cpu = deployed.num_cpus
    if memory is None and deployed.memory_bytes:
        memory = deployed.memory_bytes // 2**20
    parsed = parse_resources(cpu=cpu, memory=memory, gpu=gpu)
    if gpu is not None:
        return parsed
    return replace(
        parsed,
        num_gpus=deployed.num_gpus,
        accelerator_type=deployed.accelerator_type,
        label_selector=deployed.label_selector,
        fallback_label_selectors=deployed.fallback_label_selectors,
        gpu_spec=deployed.gpu_spec,
    )


@dataclasses.dataclass(frozen=True)
class DerivedLookup:
    """The lookup of a variant of a class not looked up yet: the class's own lookup, then the
    derivation (so that `Cls.from_name(...).with_options(...)` stays lazy, as on Modal)."""

    base: Any  # the class's lookup: () -> (record, object id)
    derivation: Derivation

    def __call__(self) -> tuple[Any, str]:
        record, object_id = self.base()
        if not isinstance(record, ClassRecord):
            return record, object_id  # the wrong kind: the rebuild says so
        return derive_record(record, self.derivation), object_id


def arguments(values: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Keyword arguments as a hashable, picklable tuple (sorted by name)."""
    return tuple(sorted(values.items()))
