"""`modal deploy` (and `modal serve`, in `serve.py`): publishing an app beyond one command.

`modal deploy APP_REF` imports the file (or `-m` module), finds its app (`file.py::var` picks
one of several) and deploys it on the cluster at `MODAL_RAY_ADDRESS` (`App.deploy`, see
`modal_ray.deployment`): its functions and classes stay callable by name after the command
exits. Without a cluster it refuses before importing anything: the embedded Ray would die with
the command.
"""

from __future__ import annotations

import typer

from .unbuilt import MODULE_MODE_HELP, Strategy
from .utils import ENV_HELP, warn


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
    import sys

    from modal.exception import InvalidError
    from modal_ray import config
    from modal_ray.deployment import NO_CLUSTER

    from .import_refs import find_apps, import_ref, parse_import_ref

    if config.ray_address() is None:
        raise InvalidError(f"`modal deploy` refused: {NO_CLUSTER}")
    if stream_logs or timestamps:
        warn("`--stream-logs` / `--timestamps` are ignored: deployed apps' logs are Ray's.")
    ref = parse_import_ref(app_ref, use_module_mode=use_module_mode)
    saved_argv, saved_path = list(sys.argv), list(sys.path)
    try:
        module = import_ref(ref)
        apps = find_apps(module)
        if ref.object_path:
            apps = [(var, a) for var, a in apps if var == ref.object_path]
        if not apps:
            where = f" named {ref.object_path!r}" if ref.object_path else ""
            raise InvalidError(
                f"{ref.describe()} has no `modal.App`{where} to deploy: define one at the top"
                ' level (`app = modal.App("name")`).'
            )
        if len(apps) > 1:
            names = ", ".join(var for var, _ in apps)
            raise InvalidError(
                f"{ref.describe()} has several apps ({names}): pick one with"
                f" `modal deploy {ref.file_or_module}::<name>`."
            )
        _, the_app = apps[0]
        from modal_ray.backends import get_backend

        get_backend().connect(config.environment_name(env))  # on this thread (see `modal run`)
        from modal_ray.output import enable_output

        with enable_output():  # status lines, such as the web endpoints' URLs
            the_app.deploy(name=name or None, environment_name=env, tag=tag)
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    functions = [*the_app.registered_functions, *the_app.registered_classes]
    print(f"✓ App {the_app.name!r} deployed ({the_app.app_id}).")
    for tag_ in functions:
        print(f"├── 🔨 {tag_}")


def serve(
    app_ref: str = typer.Argument(..., help="Path to a Python file with an app."),
    name: str | None = typer.Option(None, "-n", "--name", help="Name of the app."),
    timeout: float | None = typer.Option(None, help="Stop serving after this many seconds."),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
    use_module_mode: bool = typer.Option(False, "-m", help=MODULE_MODE_HELP),
    timestamps: bool = typer.Option(False, help="Show timestamps for each log line."),
) -> None:
    """Expose Web Functions with hot-reloading on code changes."""
    from .serve import serve_command

    if timestamps:
        warn("`--timestamps` is ignored by `modal serve`.")
    raise typer.Exit(serve_command(app_ref, name, timeout, env, use_module_mode))


def register(app: typer.Typer) -> None:
    """Add `modal deploy` and `modal serve` to the root app."""
    app.command("deploy")(deploy)
    app.command("serve")(serve)
