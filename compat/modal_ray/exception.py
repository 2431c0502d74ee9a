"""Modal's exception tree, name for name and base for base (modal 1.6.4).

User code catches these by name, so the hierarchy mirrors the real client exactly. Ray errors never
reach user code directly: `modal_ray.backends.ray.errors` translates them into these types. The
classes live here (so the core can import them without importing `modal`) and claim
`modal.exception` as their home, which re-exports them.
"""

from __future__ import annotations

import random
import signal
import threading
from typing import Any


class Error(Exception):
    """Base class for all Modal errors."""


class _GRPCErrorWrapper:
    """Mixin giving the status-carrying errors Modal's `message`, `details` and `status`
    properties."""

    args: tuple[Any, ...]

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    @property
    def details(self) -> list[Any]:
        return []

    @property
    def status(self) -> Any:
        return None


class AlreadyExistsError(Error, _GRPCErrorWrapper):
    """Raised when a resource creation conflicts with an existing resource."""


class AuthError(Error, _GRPCErrorWrapper):
    """Raised when a client has missing or invalid authentication."""


class ClientClosed(Error):
    """Raised when the client (here: the Ray connection) was closed."""


class ConnectionError(Error):
    """Raised when an issue occurs while connecting to the cluster."""


class DataLossError(Error, _GRPCErrorWrapper):
    """Raised when data is lost or corrupted."""


class InvalidError(Error, _GRPCErrorWrapper):
    """Raised when user does something invalid."""


class ConflictError(InvalidError, _GRPCErrorWrapper):
    """Raised when a resource conflict occurs between the request and current system state."""


class DeserializationError(Error):
    """Raised to provide more context when an error is encountered during deserialization."""


class SerializationError(Error):
    """Raised to provide more context when an error is encountered during serialization."""


class ExecutionError(Error):
    """Raised when something unexpected happened during runtime."""


class InternalError(Error, _GRPCErrorWrapper):
    """Raised when an internal error occurs."""


class InternalFailure(Error):
    """Retriable internal error."""


class LogsFetchError(Error):
    """Raised when trying to fetch too many logs."""


class NotFoundError(Error, _GRPCErrorWrapper):
    """Raised when a requested resource was not found."""


class PermissionDeniedError(Error, _GRPCErrorWrapper):
    """Raised when a user does not have permission to perform the requested operation."""


class RemoteError(Error):
    """Raised when an error occurs on the remote side (the cluster)."""


class ImageBuildError(RemoteError):
    """Raised when an Image build fails."""


class RequestSizeError(Error):
    """Raised when an operation produces a request that is too large."""


class ResourceExhaustedError(Error, _GRPCErrorWrapper):
    """Raised when a resource has been exhausted, e.g. a quota or rate limit."""


class ServiceError(Error, _GRPCErrorWrapper):
    """Raised when an error occurs in basic client/server communication."""


class SnapshotCreationError(Error):
    """Snapshot operation is done and failed."""


class UnimplementedError(Error, _GRPCErrorWrapper):
    """Raised when a requested operation is not implemented or not supported."""


class VersionError(Error):
    """Raised when the current client version is unsupported."""


class WorkspaceManagementError(Error):
    """Raised when an error occurs while managing a workspace."""


class SandboxTerminatedError(Error):
    """Raised when a Sandbox is terminated for an internal reason."""


class SandboxFilesystemError(Error):
    """Base class for sandbox filesystem errors."""


class SandboxFilesystemDirectoryNotEmptyError(SandboxFilesystemError):
    """Raised when a directory is not empty."""


class SandboxFilesystemFileTooLargeError(SandboxFilesystemError):
    """Raised when a file exceeds the maximum allowed size for a read operation."""


class SandboxFilesystemIsADirectoryError(SandboxFilesystemError):
    """Raised when a file operation targets a directory."""


class SandboxFilesystemNotADirectoryError(SandboxFilesystemError):
    """Raised when a path component is not a directory."""


class SandboxFilesystemNotFoundError(SandboxFilesystemError):
    """Raised when a file or directory is not found in the sandbox."""


class SandboxFilesystemPathAlreadyExistsError(SandboxFilesystemError):
    """Raised when a path already exists and the operation requires it to be absent."""


class SandboxFilesystemPermissionError(SandboxFilesystemError):
    """Raised when permission is denied for a file operation in the sandbox."""


class TimeoutError(Error):
    """Base class for Modal timeouts."""


class ExecTimeoutError(TimeoutError):
    """Raised when a container process exceeds its execution duration limit."""


class FunctionTimeoutError(TimeoutError):
    """Raised when a Function exceeds its execution duration limit and times out."""


class InteractiveTimeoutError(TimeoutError):
    """Raised when interactive frontends time out while trying to connect to a container."""


class MountUploadTimeoutError(TimeoutError):
    """Raised when a Mount upload times out."""


class OutputExpiredError(TimeoutError):
    """Raised when the Output exceeds expiration and times out."""


class SandboxTimeoutError(TimeoutError):
    """Raised when a Sandbox exceeds its execution duration limit and times out."""


class VolumeUploadTimeoutError(TimeoutError):
    """Raised when a Volume upload times out."""


class ModuleNotMountable(Exception):
    """Raised when a local module cannot be shipped to the cluster."""


class InputCancellation(BaseException):
    """Raised in a sync input when it is cancelled (a BaseException, as in Modal)."""


class AsyncUsageWarning(UserWarning):
    """Warning emitted when a blocking Modal interface is used in an async context."""


class DeprecationError(UserWarning):
    """UserWarning category emitted when a deprecated Modal feature or API is used."""


class PendingDeprecationError(UserWarning):
    """Soon to be deprecated feature. Only used intermittently because of multi-repo concerns."""


class ServerWarning(UserWarning):
    """Warning originating from the cluster and re-issued in client code."""


class InternalAPIWarning(UserWarning):
    """Warning emitted when user code directly accesses internal APIs."""


class _CliUserExecutionError(Exception):
    """Private wrapper for exceptions during `modal run` user code execution."""

    def __init__(self, user_source: str) -> None:
        super().__init__(user_source)
        self.user_source = user_source


def simulate_preemption(wait_seconds: int, jitter_seconds: int = 0) -> None:
    """Simulate a preemption interrupt (SIGINT) after `wait_seconds` seconds, inside a function.

    Modal sends SIGINT and then kills the container; here a timer raises SIGINT in this process.
    """
    if not 1 <= wait_seconds <= 1800:
        raise InvalidError("`simulate_preemption` accepts `wait_seconds` between 1 and 1800.")
    delay = wait_seconds + (random.uniform(0, jitter_seconds) if jitter_seconds else 0.0)
    timer = threading.Timer(delay, signal.raise_signal, args=(signal.SIGINT,))
    timer.daemon = True
    timer.start()


for _obj in list(globals().values()):
    if isinstance(_obj, type) and _obj.__module__ == __name__:
        _obj.__module__ = "modal.exception"
simulate_preemption.__module__ = "modal.exception"
