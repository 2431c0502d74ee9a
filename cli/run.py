"""`modal run`: import the user's file, pick an entrypoint, parse its options, run the app.

Order matters, so that mistakes cost nothing:
1. `sys.argv` becomes `[the user's file, *entrypoint tokens]` (as for `python file.py ...`), then
   the file is imported; Ray later adds the directory of `sys.argv[0]` to the workers' path;
2. the entrypoint is resolved and its options parsed: a usage error or `--help` exits here,
   before any Ray is started;
3. only then does the app run (`app.run(...)` connects to Ray), under `modal.enable_output()`
   unless `--quiet`.

A local entrypoint runs here (an `async def` one under `asyncio.run`); a Function chosen as the
entrypoint runs remotely with `.remote(...)` (`.remote_gen(...)` for generators), and only the
module's global scope runs locally (ENT-05).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import typer

from modal.exception import InvalidError
from modal_ray import config, output

from .import_refs import ImportRef, Runnable, import_ref, parse_import_ref, resolve_runnable
from .import_refs import script_path as _script_path
from .params import cli_signature, parse_cli_args
from .utils import ENV_HELP, warn

RUN_HELP = (
    "Run a Modal function or local entrypoint.\n\n"
    "`FUNC_REF` is `{file or module}::{function name}`, or"
    " `{file or module}::{app variable name}.{function name}`. With a single app that has a single"
    " local entrypoint (or a single function), the name may be left out: `modal run my_app.py`."
    " Use `-m` for a Python module path: `modal run -m my_project.my_app`.\n\n"
    "Options after `FUNC_REF` are the entrypoint's own: see `modal run FUNC_REF --help`."
)


def run(
    ctx: typer.Context,
    func_ref: str = typer.Argument(..., metavar="FUNC_REF", show_default=False),
    name: str | None = typer.Option(
        None, "-n", "--name", help="Name of the app (shown in status lines)."
    ),
    write_result: str | None = typer.Option(
        None,
        "-w",
        "--write-result",
        help="Write return value (which must be str or bytes) to this local path.",
    ),
    quiet: bool = typer.Option(
        False, "-q", "--quiet", help="Don't show Modal progress indicators."
    ),
    detach: bool = typer.Option(
        False, "-d", "--detach", help="Don't stop the app if the local process dies or disconnects."
    ),
    interactive: bool = typer.Option(
        False, "-i", "--interactive", help="Run the app in interactive mode (not supported on Ray)."
    ),
    env: str | None = typer.Option(None, "-e", "--env", help=ENV_HELP),
    m: bool = typer.Option(
        False,
        "-m",
        help="Interpret argument as a Python module path instead of a file/script path.",
    ),
    timestamps: bool = typer.Option(
        False, "--timestamps", help="Show timestamps for each log line."
    ),
) -> None:
    ref = parse_import_ref(func_ref, use_module_mode=m)
    tokens = list(ctx.args)
    with _script_environment(ref, tokens) as load:
        runnable = load()
        sig = cli_signature(runnable.raw_f, runnable.tag)
        parsed = parse_cli_args(
            sig,
            tokens,
            prog_name=f"{ctx.command_path} {func_ref}",
            help_text=inspect.getdoc(runnable.raw_f),
        )
        if parsed is None:  # `--help` was shown
            return
        args, kwargs = parsed
        if interactive:
            warn("interactive mode (`-i`) is not supported on Ray; running normally.")
        if detach and config.ray_address() is None:
            warn(
                "`--detach` keeps an app running only on a long-lived Ray cluster: the embedded"
                " local Ray stops when this process exits, so this run waits for its spawned"
                " work before it exits. Start a cluster with `modal-ray cluster start` and"
                " export the MODAL_RAY_ADDRESS it prints (or set MODAL_RAY_ADDRESS to an"
                " existing cluster)."
            )
        result = _run(runnable, args, kwargs, quiet, detach, env, name, timestamps)
    if write_result:
        _write_result(Path(write_result), result)


@contextlib.contextmanager
def _script_environment(ref: ImportRef, tokens: list[str]) -> Iterator[Any]:
    """`sys.argv` and `sys.path` as the user's script expects them; restored afterwards."""
    saved_argv, saved_path = list(sys.argv), list(sys.path)
    sys.argv = [_script_path(ref), *tokens]

    def load() -> Runnable:
        module = import_ref(ref)
        sys.argv[0] = _script_path(ref, module)
        return resolve_runnable(module, ref)

    try:
        yield load
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path


def _run(
    runnable: Runnable,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    quiet: bool,
    detach: bool,
    env: str | None,
    name: str | None,
    timestamps: bool,
) -> Any:
    if not sys.stdout.isatty() or os.environ.get("NO_COLOR"):
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # plain `(f pid=...)` prefixes in files
    run_kwargs: dict[str, Any] = {"detach": detach, "environment_name": env}
    if name:
        run_kwargs["name"] = name
    with contextlib.ExitStack() as stack:
        if timestamps:
            stack.enter_context(_timestamped_output())
        if not quiet:
            stack.enter_context(output.enable_output(show_progress=not timestamps))
        _connect_on_this_thread(env)
        stack.enter_context(runnable.app.run(**run_kwargs))
        return _call(runnable, args, kwargs)


def _connect_on_this_thread(env: str | None) -> None:
    """Start (or attach to) Ray from the main thread before `app.run()` does it on a pool thread.

    Ray starts its embedded cluster's processes with a parent-death signal tied to the thread
    that spawned them; if that is a pool thread, the cluster dies when the pool is joined at
    interpreter exit, and Ray's own exit hook then waits ~15 s for the lost GCS.
    """
    from modal_ray.backends import get_backend

    get_backend().connect(config.environment_name(env))


def _call(runnable: Runnable, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if runnable.kind == "entrypoint":
        result = runnable.obj(*args, **kwargs)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
        return result
    fn = runnable.obj
    if fn.is_generator:
        for _ in fn.remote_gen(*args, **kwargs):
            pass
        return None
    return fn.remote(*args, **kwargs)


def _write_result(path: Path, result: Any) -> None:
    if isinstance(result, str):
        path.write_text(result)
    elif isinstance(result, bytes):
        path.write_bytes(result)
    else:
        raise InvalidError(
            f"`--write-result` needs the entrypoint to return str or bytes, but it returned"
            f" {type(result).__name__}."
        )


# -- --timestamps ------------------------------------------------------------------------------


class _TimestampedStream:
    """Prefixes every line written to a text stream with the local time.

    Worker output reaches this process through Ray's log thread, which writes to whatever
    `sys.stdout` / `sys.stderr` are at that moment, so swapping them covers both local and remote
    lines. A lock keeps the prefix and the line together when both threads write.
    """

    def __init__(self, inner: TextIO, lock: threading.Lock) -> None:
        self._inner = inner
        self._lock = lock
        self._at_line_start = True

    def write(self, text: str) -> int:
        with self._lock:
            out = []
            for piece in text.splitlines(keepends=True):
                if self._at_line_start:
                    out.append(datetime.now().astimezone().isoformat(timespec="milliseconds") + " ")
                out.append(piece)
                self._at_line_start = piece.endswith("\n")
            self._inner.write("".join(out))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@contextlib.contextmanager
def _timestamped_output() -> Iterator[None]:
    saved = sys.stdout, sys.stderr
    lock = threading.Lock()
    sys.stdout = _TimestampedStream(saved[0], lock)  # type: ignore[assignment]
    sys.stderr = _TimestampedStream(saved[1], lock)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def register(app: typer.Typer) -> None:
    """Add `modal run` to the root app."""
    app.command(
        "run",
        help=RUN_HELP,
        context_settings={
            # Everything after FUNC_REF belongs to the entrypoint, `--help` included.
            "allow_extra_args": True,
            "ignore_unknown_options": True,
            "allow_interspersed_args": False,
        },
    )(run)
