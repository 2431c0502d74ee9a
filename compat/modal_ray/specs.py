"""Frozen, engine-neutral descriptions of what the user asked for.

These plain dataclasses cross the backend seam; no Ray type appears here. The backend turns a
`Resources` into task options and a `FunctionSpec` into a submitted task.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modal_ray.exception import InvalidError


@dataclass(frozen=True, slots=True)
class StoreRef:
    """What the backend needs to find one Dict or Queue. Crosses the backend seam."""

    kind: str  # "dict" | "queue"
    environment: str
    name: str | None  # None for an ephemeral object
    ephemeral_id: str | None
    root: str  # the state store root of the process that made the reference


@dataclass(frozen=True, slots=True)
class Resources:
    """What one container (one Ray task or actor) reserves."""

    num_cpus: float = 1.0
    memory_bytes: int | None = None
    num_gpus: float = 0
    accelerator_type: str | None = None
    # Fallback lists (`gpu=["H100", "A100"]`): Ray label selectors tried in order.
    label_selector: Mapping[str, str] | None = None
    fallback_label_selectors: tuple[Mapping[str, str], ...] = ()
    gpu_spec: str | None = None  # the user's spelling, for messages


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Modal's retry policy: attempts after the first, and the delay before each."""

    max_retries: int
    backoff_coefficient: float = 2.0
    initial_delay: float = 1.0
    max_delay: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_retries, int) or not 0 <= self.max_retries <= 10:
            raise InvalidError(
                f"Invalid retries number: {self.max_retries}. Must be between 0 and 10."
            )
        if not 1.0 <= self.backoff_coefficient <= 10.0:
            raise InvalidError(
                f"Invalid backoff_coefficient: {self.backoff_coefficient}."
                " Must be between 1.0 and 10.0."
            )
        if not 0.0 <= self.initial_delay <= 60.0:
            raise InvalidError(
                f"Invalid initial_delay: {self.initial_delay}. Must be between 0 and 60 seconds."
            )
        if not 1.0 <= self.max_delay <= 60.0:
            raise InvalidError(
                f"Invalid max_delay: {self.max_delay}. Must be between 1 and 60 seconds."
            )

    def delay_for(self, retry_number: int) -> float:
        """Seconds to wait before retry number `retry_number` (1-based)."""
        delay = self.initial_delay * (self.backoff_coefficient ** (retry_number - 1))
        return float(min(delay, self.max_delay))


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """Everything about one Modal Function that decides how its inputs run."""

    tag: str  # "f" or "Cls.method"
    app_name: str | None
    is_generator: bool = False
    is_async: bool = False
    timeout: float = 300.0
    retries: RetryPolicy | None = None
    resources: Resources = field(default_factory=Resources)
    max_containers: int | None = None
    runtime_env: Mapping[str, Any] = field(default_factory=dict)
    include_source: bool = True
    serialized: bool = False
    max_calls: int | None = None
    # `@clustered(size=n)`: each input runs on n gang-scheduled ranks (`modal_ray.clustered`).
    cluster_size: int | None = None


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A pool of containers (Serve deployment) for a class parameter set or a container function."""

    name: str  # unique per app run, class, parameter set and options
    tag: str
    resources: Resources = field(default_factory=Resources)
    runtime_env: Mapping[str, Any] = field(default_factory=dict)
    min_replicas: int = 0
    max_replicas: int = 100
    max_ongoing: int = 1
    target_ongoing: float = 1.0
    scaledown_window: float = 60.0
    exit_grace_s: float = 30.0
    include_source: bool = True
