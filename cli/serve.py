"""`modal serve APP_REF`: serve an app's web endpoints, reloading when its files change.

The command itself never imports the user's code. It runs the app in a child process
(`python -m modal_ray.cli.serve --child ...`, which imports the file and keeps `app.run()` open)
and watches the file's directory with `watchfiles`; on a change of a Python file it stops the
child (Ctrl-C: the app stops and its endpoints go) and starts a new one, so the new code is
served by fresh workers and no old module survives. Each child asks for the ports its endpoints
had before (a small JSON file the children share), so URLs stay across reloads. Ctrl-C or
`--timeout` stops the child and exits.

A child whose code fails to import or start is reported and the command waits for the next
change, except for the first child: then the command exits with its status.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

STOP_GRACE_S = 60.0


def _watch_root(app_ref: str, use_module_mode: bool) -> Path:
    if use_module_mode:
        import importlib.util

        spec = importlib.util.find_spec(app_ref.partition("::")[0])
        if spec is None or spec.origin is None:
            return Path.cwd()
        return Path(spec.origin).resolve().parent
    return Path(app_ref.partition("::")[0]).resolve().parent


def _start_child(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "modal_ray.cli.serve", "--child", *argv],
        stdin=subprocess.DEVNULL,
    )


def _stop_child(child: subprocess.Popen[bytes]) -> int:
    if child.poll() is None:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return int(child.returncode)


def serve_command(
    app_ref: str,
    name: str | None,
    timeout: float | None,
    env: str | None,
    use_module_mode: bool,
) -> int:
    """The supervisor loop; the exit status."""
    import watchfiles

    from modal.exception import InvalidError

    target = app_ref.partition("::")[0]
    if not use_module_mode and not Path(target).is_file():
        raise InvalidError(f"`modal serve`: no such file {target!r}.")
    with tempfile.TemporaryDirectory(prefix="modal-serve-") as tmp:
        ports_file = str(Path(tmp) / "ports.json")
        argv = [app_ref, "--ports-file", ports_file]
        if name:
            argv += ["--name", name]
        if env:
            argv += ["--env", env]
        if use_module_mode:
            argv += ["-m"]
        stop = threading.Event()
        if timeout is not None:
            threading.Timer(timeout, stop.set).start()
        child = _start_child(argv)
        first = True
        try:
            for _changes in watchfiles.watch(
                _watch_root(app_ref, use_module_mode),
                watch_filter=watchfiles.PythonFilter(),
                stop_event=stop,
                rust_timeout=500,
                yield_on_timeout=True,
                raise_interrupt=True,
            ):
                if child.poll() is not None and first and child.returncode != 0:
                    return int(child.returncode)  # the app never came up
                if not _changes:
                    continue
                first = False
                print("↻ Code changed: reloading the app.", file=sys.stderr, flush=True)
                _stop_child(child)
                child = _start_child(argv)
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            status = _stop_child(child)
        print("✓ Stopped serving.", file=sys.stderr, flush=True)
        return 0 if status in (0, -signal.SIGINT, 130) else status


def _child(argv: list[str]) -> int:
    """Import the app, run it, and keep it open until SIGINT/SIGTERM."""
    import argparse

    parser = argparse.ArgumentParser(prog="modal serve (child)")
    parser.add_argument("app_ref")
    parser.add_argument("--ports-file", required=True)
    parser.add_argument("--name")
    parser.add_argument("--env")
    parser.add_argument("-m", dest="module", action="store_true")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    import modal
    from modal.exception import InvalidError
    from modal_ray import web

    from .import_refs import find_apps, import_ref, parse_import_ref
    from .import_refs import script_path as _script_path

    ref = parse_import_ref(args.app_ref, use_module_mode=args.module)
    sys.argv = [_script_path(ref)]
    module = import_ref(ref)
    apps = find_apps(module)
    if ref.object_path:
        apps = [(var, a) for var, a in apps if var == ref.object_path]
    if len(apps) != 1:
        raise InvalidError(
            f"{ref.describe()} must have exactly one `modal.App` to serve"
            f" (pick one with `modal serve {ref.file_or_module}::<name>`)."
        )
    the_app: Any = apps[0][1]
    ports: dict[str, int] = {}
    if os.path.exists(args.ports_file):
        with open(args.ports_file) as f:
            ports = {str(k): int(v) for k, v in json.load(f).items()}
    web.request_ports(ports)
    run_kwargs: dict[str, Any] = {"environment_name": args.env}
    if args.name:
        run_kwargs["name"] = args.name
    try:
        with modal.enable_output(), the_app.run(**run_kwargs):
            kept = {**ports, **web.served_ports()}
            tmp = args.ports_file + ".tmp"
            with open(tmp, "w") as f:
                json.dump(kept, f)
            os.replace(tmp, args.ports_file)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.exit(_child(sys.argv[2:]))
    sys.exit("usage: modal serve APP_REF")
