"""`modal shell`: a command or interactive shell in a fresh sandbox, or in a running one.

A shell runs as a process of a sandbox (`modal.Sandbox`), on the same process machinery as
`Sandbox.exec`:
- `modal shell` / `modal shell --image TAG`: a new sandbox (the cluster's system tools; an image's
  environment, workdir and files as `Sandbox.create(image=...)` applies them);
- `modal shell app.py::func` (or `-m module::func`): a new sandbox with that function's image,
  environment, secrets, volumes and cpu/memory/gpu;
- `modal shell sb-...`: a process in that running sandbox (as `modal container exec`).
The command (`--cmd`, default `/bin/bash`) is a shell command line (run by `/bin/sh -c`). Where
this terminal is a TTY (or with `--pty`), it runs on a pseudo-terminal in the sandbox, this
terminal in raw mode relaying keys and output; otherwise stdin, stdout and stderr are relayed as
streams. The exit status is the command's. A sandbox made for the shell ends with it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

import typer

from modal.exception import InvalidError, UnimplementedError

from .unbuilt import MODULE_MODE_HELP
from .utils import ENV_HELP

SHELL_TIMEOUT_S = 24 * 3600  # a sandbox made for a shell lives at most this long


class Runtime(str, Enum):
    gvisor = "gvisor"
    vm = "vm"


@dataclass(frozen=True)
class PtyInfo:
    """This terminal, under the field names of Modal's `pty_info`."""

    winsz_rows: int
    winsz_cols: int
    env_term: str | None
    env_colorterm: str | None
    env_term_program: str | None


def local_pty_info() -> PtyInfo:
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
        rows, cols = size.lines, size.columns
    except OSError:
        rows, cols = 24, 80
    return PtyInfo(
        winsz_rows=rows or 24,
        winsz_cols=cols or 80,
        env_term=os.environ.get("TERM"),
        env_colorterm=os.environ.get("COLORTERM"),
        env_term_program=os.environ.get("TERM_PROGRAM"),
    )


def want_pty(pty: bool | None) -> bool:
    """`--pty/--no-pty`, else whether this terminal is one."""
    if pty is not None:
        return pty
    return sys.stdin.isatty() and sys.stdout.isatty()


@contextlib.contextmanager
def _raw_terminal(enabled: bool) -> Iterator[None]:
    if not enabled or not sys.stdin.isatty():
        yield
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _copy_out(reader: Any, out: Any) -> None:
    for chunk in reader._chunks():
        out.write(chunk)
        out.flush()


def _copy_in(process: Any) -> None:
    """This terminal's stdin to the process, until it ends (then the process's stdin closes)."""
    fd = sys.stdin.fileno()
    try:
        while data := os.read(fd, 65536):
            process.stdin.write(data)
            process.stdin.drain()
        process.stdin.write_eof()
        process.stdin.drain()
    except Exception:  # the process ended, or stdin went away: nothing more to send
        return


def run_attached(sandbox: Any, argv: list[str], pty: bool) -> int:
    """Run `argv` in `sandbox` with this terminal attached; its exit status."""
    if pty:
        process = sandbox.exec(*argv, pty_info=local_pty_info(), text=False)
    else:
        process = sandbox.exec(*argv, text=False)
    outputs = [threading.Thread(target=_copy_out, args=(process.stdout, sys.stdout.buffer))]
    if not pty:
        outputs.append(threading.Thread(target=_copy_out, args=(process.stderr, sys.stderr.buffer)))
    with _raw_terminal(pty):
        for thread in outputs:
            thread.daemon = True
            thread.start()
        if sys.stdin is not None and not sys.stdin.closed:
            threading.Thread(target=_copy_in, args=(process,), daemon=True).start()
        code = process.wait()
        for thread in outputs:
            thread.join()
    return int(code) if code is not None else 1


def connect(env: str | None) -> None:
    """Start (or attach to) Ray from the main thread (see `cli.run`)."""
    from modal_ray import config
    from modal_ray.backends import get_backend

    get_backend().connect(config.environment_name(env))


def _function_options(ref: str, use_module_mode: bool) -> Any:
    """The options (image, secrets, volumes, resources...) of the function `ref` names."""
    from .import_refs import import_ref, parse_import_ref, resolve_runnable

    import_ref_ = parse_import_ref(ref, use_module_mode=use_module_mode)
    runnable = resolve_runnable(import_ref(import_ref_), import_ref_)
    if runnable.kind != "function":
        raise InvalidError(
            f"{ref!r} is a local entrypoint, which has no container: name a function"
            " (`app.py::func`) or a running sandbox (`sb-...`)."
        )
    return runnable.obj.info


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
    import modal

    for given, what in (
        (add_python, "--add-python (sandboxes run the cluster's Python)"),
        (add_local, "--add-local"),
        (cloud, "--cloud"),
        (region, "--region"),
        (runtime, "--runtime"),
        (experimental_option, "--experimental-option"),
    ):
        if given:
            raise UnimplementedError(
                f"`modal shell {what.split()[0]}` is not supported by modal-ray; a shell runs in a"
                " sandbox on the cluster (see `modal.Sandbox`)."
                + (" " + what.split(" ", 1)[1] if " " in what else "")
            )
    argv = ["/bin/sh", "-c", cmd]
    connect(env)
    if ref is not None and ref.startswith("sb-"):
        sandbox = modal.Sandbox.from_id(ref)
        raise typer.Exit(run_attached(sandbox, argv, want_pty(pty)))
    options: dict[str, Any] = {"timeout": SHELL_TIMEOUT_S}
    if ref is not None:
        info = _function_options(ref, use_module_mode)
        options.update(
            image=info.image,
            env=dict(info.env or {}),
            secrets=list(info.secrets),
            volumes=dict(info.volumes),
            cpu=info.cpu,
            memory=info.memory,
            gpu=info.gpu,
        )
    if image is not None:
        options["image"] = modal.Image.from_registry(image)
    if secret:
        options["secrets"] = [
            *options.get("secrets", []),
            *(modal.Secret.from_name(s, environment_name=env) for s in secret),
        ]
    if volume:
        options["volumes"] = {
            **options.get("volumes", {}),
            **{f"/mnt/{v}": modal.Volume.from_name(v, environment_name=env) for v in volume},
        }
    for key, value in (("cpu", cpu), ("memory", memory), ("gpu", gpu)):
        if value is not None:
            options[key] = value
    sandbox = modal.Sandbox.create(**options)
    try:
        code = run_attached(sandbox, argv, want_pty(pty))
    finally:
        sandbox.terminate()
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add `modal shell` to the root app."""
    app.command("shell")(shell)
