"""Parsing of `cpu=`, `memory=` and `gpu=` into `Resources`, with Modal's validation.

Modal accepts `cpu=2`, `cpu=(request, limit)`, `memory=MiB`, `memory=(request, limit)`, and GPU
strings such as "T4", "a10g", "A100-80GB:2", "H100!", "any", or a list of them as fallbacks. Ray
cannot cap CPU or memory, so limits are accepted with a one-time warning that says so.

Without `cpu=`, a container (a Serve replica of a class or container function) reserves Modal's
default request, `DEFAULT_CONTAINER_CPU` (0.125 core), and may use more, as on Modal: idle
containers, one per parameter set, then cost little and do not keep new ones from starting. A
task-backed function keeps Ray's 1 CPU per task, which bounds how many inputs run at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from modal_ray.exception import InvalidError

from .specs import Resources
from .warn import warn_once

ACCELERATOR_LABEL = "ray.io/accelerator-type"

# Modal GPU name -> (Ray accelerator type, max GPUs per container).
_GPU_TYPES: dict[str, tuple[str | None, int]] = {
    "T4": ("T4", 8),
    "L4": ("L4", 8),
    "A10G": ("A10G", 4),
    "A10": ("A10G", 4),
    "A100": ("A100", 8),
    "A100-40GB": ("A100", 8),
    "A100-80GB": ("A100", 8),
    "L40S": ("L40S", 8),
    "H100": ("H100", 8),
    "H200": ("H200", 8),
    "B200": ("B200", 8),
    "ANY": (None, 8),
}

_MAX_CPU = 64.0 * 8

# Modal's default CPU request per container, in cores (containers may burst above it).
DEFAULT_CONTAINER_CPU = 0.125
_MAX_MEMORY_MIB = 344_064 * 8


def _gpu_config(gpu: Any) -> str:
    """Accept the deprecated `modal.gpu.X()` objects by turning them into strings."""
    if isinstance(gpu, str):
        return gpu
    to_str = getattr(gpu, "_modal_gpu_string", None)
    if callable(to_str):
        return str(to_str())
    raise InvalidError(
        f"Invalid GPU config {gpu!r}: use a string such as 'H100', 'A100-80GB:2' or 'any'."
    )


def parse_gpu(spec: str) -> tuple[str | None, int, str]:
    """'a100-80gb:2' -> ('A100', 2, 'A100-80GB:2'). The accelerator type is None for 'any'."""
    raw = _gpu_config(spec).strip()
    if not raw:
        raise InvalidError("Empty GPU string: use a type such as 'T4' or 'H100', or 'any'.")
    name, sep, count_s = raw.partition(":")
    name = name.strip().upper().rstrip("!")  # "H100!" only disables Modal's H100->H200 upgrade
    if name not in _GPU_TYPES:
        known = ", ".join(k for k in _GPU_TYPES if k != "ANY")
        raise InvalidError(f"Invalid GPU type {raw!r}: known types are {known} and 'any'.")
    count = 1
    if sep:
        try:
            count = int(count_s)
        except ValueError:
            raise InvalidError(
                f"Invalid GPU count in {raw!r}: the count after ':' must be an integer."
            ) from None
    accel, max_count = _GPU_TYPES[name]
    if count < 1 or count > max_count:
        raise InvalidError(
            f"Invalid GPU count in {raw!r}: {name} allows 1 to {max_count} GPUs per container."
        )
    return accel, count, f"{name}:{count}" if count > 1 else name


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidError(f"Invalid {what} {value!r}: expected a number.")
    return float(value)


def parse_cpu(cpu: float | tuple[float, float] | None) -> float:
    if cpu is None:
        return 1.0
    if isinstance(cpu, tuple):
        if len(cpu) != 2:
            raise InvalidError(
                f"Invalid cpu {cpu!r}: expected a number or a (request, limit) tuple."
            )
        request, limit = _number(cpu[0], "cpu request"), _number(cpu[1], "cpu limit")
        if limit < request:
            raise InvalidError(f"Invalid cpu {cpu!r}: the limit must be at least the request.")
        warn_once(
            "cpu-limit",
            "cpu=(request, limit): Ray cannot cap CPU use; only the request is reserved.",
        )
    else:
        request = _number(cpu, "cpu")
    if request <= 0:
        raise InvalidError(f"Invalid cpu {cpu!r}: the CPU request must be greater than 0.")
    if request > _MAX_CPU:
        raise InvalidError(f"Invalid cpu {cpu!r}: at most {_MAX_CPU:g} cores per container.")
    return request


def parse_memory(memory: int | tuple[int, int] | None) -> int | None:
    """MiB (Modal) -> bytes (Ray)."""
    if memory is None:
        return None
    if isinstance(memory, tuple):
        if len(memory) != 2:
            raise InvalidError(
                f"Invalid memory {memory!r}: expected MiB or a (request, limit) tuple."
            )
        request, limit = _number(memory[0], "memory request"), _number(memory[1], "memory limit")
        if limit < request:
            raise InvalidError(
                f"Invalid memory {memory!r}: the limit must be at least the request."
            )
        warn_once(
            "memory-limit",
            "memory=(request, limit): Ray does not enforce memory limits;"
            " only the request is reserved.",
        )
    else:
        request = _number(memory, "memory")
    if request <= 0:
        raise InvalidError(
            f"Invalid memory {memory!r}: the memory request must be greater than 0 MiB."
        )
    if request > _MAX_MEMORY_MIB:
        raise InvalidError(
            f"Invalid memory {memory!r}: at most {_MAX_MEMORY_MIB} MiB per container."
        )
    return int(request * 1024 * 1024)


def container_resources(resources: Resources, cpu: Any) -> Resources:
    """What a container reserves: the parsed request, or Modal's default share without `cpu=`."""
    if cpu is not None:
        return resources
    return replace(resources, num_cpus=DEFAULT_CONTAINER_CPU)


def parse_resources(
    *,
    cpu: float | tuple[float, float] | None = None,
    memory: int | tuple[int, int] | None = None,
    gpu: str | Sequence[str] | None = None,
) -> Resources:
    num_cpus = parse_cpu(cpu)
    memory_bytes = parse_memory(memory)
    if gpu is None:
        return Resources(num_cpus=num_cpus, memory_bytes=memory_bytes)
    options = [gpu] if isinstance(gpu, str) or not isinstance(gpu, Sequence) else list(gpu)
    if not options:
        raise InvalidError("Invalid gpu=[]: give at least one GPU type.")
    parsed = [parse_gpu(o) for o in options]
    accel, count, spelled = parsed[0]
    if len(parsed) == 1:
        return Resources(
            num_cpus=num_cpus,
            memory_bytes=memory_bytes,
            num_gpus=count,
            accelerator_type=accel,
            gpu_spec=spelled,
        )
    counts = {c for _, c, _ in parsed}
    if len(counts) > 1:
        warn_once(
            f"gpu-fallback-counts:{options}",
            f"gpu={options!r}: Ray reserves one GPU count per task;"
            f" using {count} for every option.",
        )
    selectors = tuple({ACCELERATOR_LABEL: a} if a else {} for a, _, _ in parsed)
    return Resources(
        num_cpus=num_cpus,
        memory_bytes=memory_bytes,
        num_gpus=count,
        label_selector=selectors[0] or None,
        fallback_label_selectors=selectors[1:],
        gpu_spec=" | ".join(s for _, _, s in parsed),
    )
