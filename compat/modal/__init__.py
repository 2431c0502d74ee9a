"""modal-ray: the Modal Python SDK's surface, running on a Ray cluster you own.

This file is the table of contents. Importing `modal` does not import Ray; the first call that
needs the cluster connects (or starts an embedded local Ray).
"""

from typing import Any

from modal_ray.context import current_function_call_id, current_input_id, is_local
from modal_ray.synchronizer import dual_function
from modal_ray.tunnel import Tunnel, forward
from modal_ray.unsupported import placeholder

# `as` re-exports: submodules that Modal's package also makes attributes on import (its
# `__init__` reaches them through the modules it imports), so that annotations such as
# `modal.io_streams.StreamWriter` work after a bare `import modal`.
from . import call_graph as call_graph
from . import cluster as cluster
from . import config as config
from . import container_process as container_process
from . import exception, types
from . import exceptions as exceptions
from . import experimental as experimental
from . import file_io as file_io
from . import gpu as gpu
from . import io_streams as io_streams
from . import sandbox_fs as sandbox_fs
from . import stream_type as stream_type
from .app import App
from .cloud_bucket_mount import CloudBucketMount
from .cls import Cls
from .cluster import Cluster
from .dict import Dict
from .environments import Environment
from .exception import Error
from .file_pattern_matcher import FilePatternMatcher
from .functions import Function, FunctionCall
from .image import Image
from .network_file_system import NetworkFileSystem
from .output import enable_output
from .partial_function import (
    asgi_app,
    batched,
    clustered,
    concurrent,
    enter,
    exit,
    fastapi_endpoint,
    method,
    parameter,
    sessioned,
    web_endpoint,
    web_server,
    wsgi_app,
)
from .queue import Queue
from .retries import Retries
from .sandbox import Probe, Sandbox
from .schedule import Cron, Period
from .secret import Secret
from .server import Server
from .snapshot import SandboxSnapshot
from .volume import Volume

__version__ = "1.6.4"

_LATER = "not supported by this version of modal-ray yet (see docs/compat.md)."

Proxy = placeholder(
    "Proxy", "Proxies are a Modal platform feature; egress is the cluster's.", "modal.proxy"
)
Workspace = placeholder("Workspace", "Workspaces are a Modal platform feature.", "modal.workspace")
SchedulerPlacement = placeholder(
    "SchedulerPlacement",
    "Scheduler placement is a Modal platform feature.",
    "modal.scheduler_placement",
)
Client = placeholder(
    "Client", "There is no Modal client on Ray: the cluster is the client's target.", "modal.client"
)


@dual_function
async def interact() -> None:
    """Interactive containers are not supported on Ray."""
    raise exception.UnimplementedError("`modal.interact()` is not supported on Ray.")


def __getattr__(name: str) -> Any:
    if name == "Stub":
        raise AttributeError(
            "`modal.Stub` was renamed to `modal.App` in Modal 1.0; use `modal.App`."
        )
    if name == "billing":
        raise AttributeError(f"`modal.{name}` is {_LATER}")
    raise AttributeError(f"module 'modal' has no attribute {name!r}")


__all__ = [
    "App",
    "Client",
    "CloudBucketMount",
    "Cls",
    "Cluster",
    "Cron",
    "Dict",
    "Environment",
    "Error",
    "FilePatternMatcher",
    "Function",
    "FunctionCall",
    "Image",
    "NetworkFileSystem",
    "Period",
    "Probe",
    "Proxy",
    "Queue",
    "Retries",
    "Sandbox",
    "SandboxSnapshot",
    "SchedulerPlacement",
    "Secret",
    "Server",
    "Tunnel",
    "Volume",
    "Workspace",
    "__version__",
    "asgi_app",
    "batched",
    "clustered",
    "concurrent",
    "current_function_call_id",
    "current_input_id",
    "enable_output",
    "enter",
    "exit",
    "fastapi_endpoint",
    "forward",
    "interact",
    "is_local",
    "method",
    "parameter",
    "sessioned",
    "types",
    "web_endpoint",
    "web_server",
    "wsgi_app",
]
