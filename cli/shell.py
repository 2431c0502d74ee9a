"""`modal shell`: a command or interactive shell in a container (not built yet).

A container here is a Ray worker process, which has no shell of its own to attach to. See
`unbuilt.py` for how unbuilt commands behave.
"""

from __future__ import annotations

from enum import Enum

import typer

from .unbuilt import MODULE_MODE_HELP, not_built
from .utils import ENV_HELP


class Runtime(str, Enum):
    gvisor = "gvisor"
    vm = "vm"


SHELL_INSTEAD = (
    "A container here is a Ray worker process on a cluster node: to run a command like one, call"
    " `subprocess.run(...)` in a function and `modal run` it."
)


def shell(
    ref: str | None = typer.Argument(
        None, help="A function, class or running container to start the shell from."
    ),
    cmd: str = typer.Option("/bin/bash", "-c", "--cmd", help="Command to run in the container."),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
    image: str | None = typer.Option(None, help="Container image tag for the shell."),
    add_python: str | None = typer.Option(None, help="Add Python to the image (version)."),
    volume: list[str] | None = typer.Option(None, help="Name of a Volume to mount (repeatable)."),
    add_local: list[str] | None = typer.Option(None, help="Local path to add (repeatable)."),
    secret: list[str] | None = typer.Option(None, help="Name of a Secret to use (repeatable)."),
    cpu: int | None = typer.Option(None, help="Number of CPUs."),
    memory: int | None = typer.Option(None, help="Memory in MiB."),
    gpu: str | None = typer.Option(None, help="GPU type and count, e.g. `A10G:2`."),
    cloud: str | None = typer.Option(None, help="Cloud provider."),
    region: str | None = typer.Option(None, help="Region(s), comma separated."),
    runtime: Runtime | None = typer.Option(None, help="Container runtime."),
    pty: bool | None = typer.Option(None, "--pty/--no-pty", help="Run the command in a PTY."),
    use_module_mode: bool = typer.Option(False, "-m", help=MODULE_MODE_HELP),
    experimental_option: list[str] | None = typer.Option(None, hidden=True),
    experimental_v2: bool = typer.Option(False, hidden=True),
) -> None:
    """Run a command or interactive shell inside a Modal container."""
    not_built("shell", SHELL_INSTEAD)


def register(app: typer.Typer) -> None:
    """Add `modal shell` to the root app."""
    app.command("shell")(shell)
