"""The one place Ray's exceptions become Modal's.

Nothing above the backend seam catches `ray.exceptions.*`: every Ray call in this package goes
through `translate()`. The mapping table is ordered most specific first.
"""

from __future__ import annotations

import ray.exceptions as rex

from modal_ray.exception import (
    DeserializationError,
    Error,
    ExecutionError,
    ImageBuildError,
    ResourceExhaustedError,
    SerializationError,
)
from modal_ray.image.runtime_requirements import RUNTIME_NOTE


def _serialization_cause(exc: BaseException) -> bool:
    text = str(exc)
    return "serializ" in text.lower() or "pickl" in text.lower()


def translate(exc: BaseException, what: str) -> BaseException:
    """Return the Modal exception for a Ray exception raised while running `what`."""
    if isinstance(exc, Error):
        return exc
    if isinstance(exc, rex.GetTimeoutError):
        return TimeoutError(f"{what} did not finish in time")
    if isinstance(exc, rex.RuntimeEnvSetupError):
        return ImageBuildError(
            f"Could not set up the image (Ray runtime_env) for {what}: {exc}. {RUNTIME_NOTE}"
        )
    if isinstance(exc, rex.TaskCancelledError):
        return ExecutionError(f"{what} was cancelled")
    if isinstance(exc, rex.OutOfMemoryError):
        return ExecutionError(
            f"{what} was killed because its node ran out of memory."
            " Ask for more with `memory=` (MiB)."
        )
    if isinstance(exc, rex.WorkerCrashedError | rex.NodeDiedError):
        return ExecutionError(
            f"The worker running {what} died unexpectedly"
            " (after Ray's retries for system failures)."
        )
    if isinstance(exc, rex.TaskUnschedulableError | rex.ActorUnschedulableError):
        return ResourceExhaustedError(f"{what} cannot be scheduled on this cluster: {exc}")
    if isinstance(exc, rex.ObjectLostError | rex.OwnerDiedError | rex.ObjectFetchTimedOutError):
        return ExecutionError(f"The result of {what} was lost: {exc}")
    if isinstance(exc, rex.RayTaskError):
        cause = exc.cause
        if cause is not None and _serialization_cause(cause):
            return SerializationError(
                f"The return value of {what} could not be serialized (cloudpickle): {cause}"
            )
        if cause is not None and "deserializ" in str(exc).lower():
            return DeserializationError(
                f"The arguments of {what} could not be deserialized on the worker: {cause}. The"
                " worker must be able to import every module the arguments' types come from."
            )
        return ExecutionError(f"{what} failed on the worker: {exc}")
    if isinstance(exc, rex.RaySystemError):
        if "deserializ" in str(exc).lower():
            return DeserializationError(f"{what}: {exc}")
        return ExecutionError(f"Ray system error while running {what}: {exc}")
    if isinstance(exc, rex.RayError):
        return ExecutionError(f"Ray error while running {what}: {exc}")
    return exc
