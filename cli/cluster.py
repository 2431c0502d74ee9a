"""`modal-ray cluster start|stop|status`: a long-lived local Ray head to deploy apps to.

Outside the `modal` command on purpose: `modal` mirrors Modal's own CLI, and Modal has no such
command (its cluster is Modal's cloud). The head runs on 127.0.0.1 with the state store of this
shell (`MODAL_RAY_STATE`); `start` prints the line to export so that `modal deploy` and programs
of this machine use it. The work is done by `modal_ray.backends.ray.cluster`.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from typing import Any

import typer
import typer.main

cluster_cli = typer.Typer(
    name="cluster",
    help="A long-lived local Ray head that deployed apps live on.",
    no_args_is_help=True,
    add_completion=False,
)

modal_ray_cli = typer.Typer(
    name="modal-ray",
    help="modal-ray's own commands (the `modal` command mirrors Modal's).",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
modal_ray_cli.add_typer(cluster_cli, name="cluster")


def _cluster() -> Any:
    from modal_ray.backends.ray import cluster

    return cluster


@cluster_cli.command("start")
def start(
    num_cpus: int | None = typer.Option(None, "--num-cpus", help="Logical CPUs of the head."),
    port: int | None = typer.Option(None, "--port", help="GCS port (default: a free one)."),
) -> None:
    """Start a Ray head on 127.0.0.1 and print the address to export."""
    info = _cluster().start(num_cpus=num_cpus, port=port)
    print(f"export MODAL_RAY_ADDRESS={info.address}")
    print(
        f"# Ray head started (pid {info.pid}); state store {info.state_root}; log {info.log_path}.",
    )
    print(
        "# modal-ray finds the head's token in the state store; raw Ray tools also need"
        f" RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={info.token_path}"
        " RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0."
    )


@cluster_cli.command("stop")
def stop() -> None:
    """Stop the head started by `modal-ray cluster start` (by process id)."""
    info = _cluster().stop()
    if info is None:
        print("No modal-ray cluster is recorded in this state store.")
        return
    print(f"Stopped the Ray head at {info.address} (pid {info.pid}).")


@cluster_cli.command("status")
def status() -> None:
    """Show the head recorded in this state store and whether it runs."""
    info, running = _cluster().status()
    if info is None:
        print("No modal-ray cluster is recorded in this state store.")
        raise typer.Exit(1)
    state = "running" if running else "not running (stale record; `modal-ray cluster stop`)"
    print(f"{info.address} pid {info.pid}: {state}")
    if not running:
        raise typer.Exit(1)


def main(argv: Sequence[str] | None = None) -> None:
    """The `modal-ray` console script: a modal error prints one line and exits 1."""
    from modal_ray import config
    from modal_ray.exception import Error

    command = typer.main.get_command(modal_ray_cli)
    try:
        command.main(
            args=list(argv) if argv is not None else None,
            prog_name="modal-ray",
            standalone_mode=True,
        )
    except KeyboardInterrupt:
        sys.exit(130)
    except Error as exc:
        if config.show_traceback():
            traceback.print_exception(exc)
        else:
            print(f"Error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)


__all__ = ["main", "modal_ray_cli"]
if __name__ == "__main__":
    main()
