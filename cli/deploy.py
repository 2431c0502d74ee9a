"""`modal deploy` and `modal serve`: publishing an app beyond one `modal run` (not built yet).

Both need what modal-ray does not have yet: deployed apps (a registry of named apps whose
functions stay callable after the command exits) and, for `serve`, web endpoints. See
`unbuilt.py` for how unbuilt commands behave.
"""

from __future__ import annotations

import typer

from .unbuilt import DEPLOYED_APPS, MODULE_MODE_HELP, RUN_INSTEAD, Strategy, not_built
from .utils import ENV_HELP


def deploy(
    app_ref: str = typer.Argument(..., help="Path to a Python file with an app to deploy."),
    name: str = typer.Option("", help="Name of the deployment."),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
    stream_logs: bool = typer.Option(False, help="Stream logs from the app upon deployment."),
    tag: str = typer.Option("", help="Tag the deployment with a version."),
    use_module_mode: bool = typer.Option(False, "-m", help=MODULE_MODE_HELP),
    timestamps: bool = typer.Option(False, help="Show timestamps for each log line."),
    strategy: Strategy = typer.Option(
        Strategy.rolling, help="Strategy for replacing running containers."
    ),
    staged: bool = typer.Option(False, hidden=True),
) -> None:
    """Deploy a Modal application."""
    not_built("deploy", DEPLOYED_APPS)


def serve(
    app_ref: str = typer.Argument(..., help="Path to a Python file with an app."),
    name: str | None = typer.Option(None, "-n", "--name", help="Name of the app."),
    timeout: float | None = typer.Option(None, help="Stop serving after this many seconds."),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
    use_module_mode: bool = typer.Option(False, "-m", help=MODULE_MODE_HELP),
    timestamps: bool = typer.Option(False, help="Show timestamps for each log line."),
) -> None:
    """Expose Web Functions with hot-reloading on code changes."""
    not_built("serve", "It serves web endpoints, which are not built yet either. " + RUN_INSTEAD)


def register(app: typer.Typer) -> None:
    """Add `modal deploy` and `modal serve` to the root app."""
    app.command("deploy")(deploy)
    app.command("serve")(serve)
