"""Deployed apps end to end (issue 10): a head started by `modal-ray cluster start`, `modal
deploy`, lookups by name from other processes after the deploying process exited, redeploys,
`modal app list|stop`, and the errors of each step. One head for the module; it is stopped by
process id at the end, and no process of it may be left."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import IO, Any

import pytest

from tests.e2e.conftest import MODAL_RAY, modal_cli

APP = textwrap.dedent(
    """
    import modal

    app = modal.App("deployed-demo")


    @app.function()
    def square(x):
        return x * x + OFFSET


    @app.function()
    def slow(seconds):
        import time

        time.sleep(seconds)
        return "VERSION"


    @app.function()
    def via_name(x):
        # A lookup from inside a running function.
        return modal.Function.from_name("deployed-demo", "square").remote(x)


    @app.cls()
    class Greeter:
        greeting: str = modal.parameter(default="hello")

        @modal.method()
        def greet(self, name):
            return f"{self.greeting} {name} VERSION"

        @modal.method()
        def slow(self, seconds):
            import time

            time.sleep(seconds)
            return "VERSION"

        @modal.method()
        def variant(self):
            import os

            return os.environ.get("VARIANT", "deployed")
    """
)

CALLER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    import modal
    from modal.exception import NotFoundError

    out = {}
    f = modal.Function.from_name("deployed-demo", "square")
    out["square"] = f.remote(3)
    out["via_name"] = modal.Function.from_name("deployed-demo", "via_name").remote(4)
    out["from_id"] = modal.Function.from_id(f.object_id).remote(1)
    Greeter = modal.Cls.from_name("deployed-demo", "Greeter")
    out["greet"] = Greeter(greeting="hi").greet.remote("bob")
    # Variants of a class not looked up yet: their own pools, the deployed one untouched.
    Blue = modal.Cls.from_name("deployed-demo", "Greeter").with_options(
        env={"VARIANT": "blue"}, cpu=0.25, timeout=60
    ).with_concurrency(max_inputs=2)
    out["variants"] = [
        Blue(greeting="hi").variant.remote(),
        Greeter(greeting="hi").variant.remote(),
        repr(modal.Cls.from_name("deployed-demo", "Greeter").with_options(cpu=1)),
    ]

    async def aio():
        g = modal.Function.from_name("deployed-demo", "square")
        await g.hydrate.aio()
        app = await modal.App.lookup.aio("deployed-demo")
        return await g.remote.aio(2), app.app_id

    out["aio"], out["app_id"] = asyncio.run(aio())
    made = modal.App.lookup("made-on-demand", create_if_missing=True)
    out["made"] = [made.app_id, modal.App.lookup("made-on-demand").app_id]
    errors = {}
    for what, lookup in {
        "missing_app": lambda: modal.Function.from_name("no-such-app", "square").hydrate(),
        "missing_function": lambda: modal.Function.from_name("deployed-demo", "nope").remote(1),
        "wrong_kind": lambda: modal.Function.from_name("deployed-demo", "Greeter").hydrate(),
        "missing_env": lambda: modal.Function.from_name(
            "deployed-demo", "square", environment_name="elsewhere"
        ).hydrate(),
        "missing_class": lambda: modal.Cls.from_name("deployed-demo", "square")(),
        "missing_lookup": lambda: modal.App.lookup("no-such-app"),
    }.items():
        try:
            lookup()
        except NotFoundError as exc:
            errors[what] = str(exc)
    out["errors"] = errors
    print("RESULT", json.dumps(out))
    """
)


IN_FLIGHT = textwrap.dedent(
    """
    import json, sys, time
    from concurrent.futures import ThreadPoolExecutor
    import modal
    from modal.exception import NotFoundError

    f = modal.Function.from_name("deployed-demo", "slow")
    g = modal.Cls.from_name("deployed-demo", "Greeter")
    square = modal.Function.from_name("deployed-demo", "square")
    hi = g(greeting="hi")
    # A second handle that checks no version (test-only setting): only a call that finds its
    # pool removed moves it, and that call is retried on the current version.
    g_pool = modal.Cls.from_name("deployed-demo", "Greeter")
    hi_pool = g_pool(greeting="hi")
    g_pool._watch.interval = float("inf")
    assert f.remote(0) == g().slow.remote(0) == "v1"  # looked up and warm
    last = {
        "square": square.remote(3),
        "greet": hi.greet.remote("bob"),
        "pool_gone": hi_pool.greet.remote("bob"),
    }
    with ThreadPoolExecutor(2) as pool:
        calls = [pool.submit(f.remote, 12), pool.submit(g().slow.remote, 12)]
        time.sleep(2)
        print("STARTED", flush=True)
        old = [c.result() for c in calls]
    print("RESULT", json.dumps({"old": old, "before": list(last.values())}), flush=True)


    def call_old_handles(which):
        calls = {
            "square": lambda: square.remote(3),
            "greet": lambda: hi.greet.remote("bob"),
            "pool_gone": lambda: hi_pool.greet.remote("bob"),
        }
        out = {}
        for name in which:
            try:
                out[name] = calls[name]()
            except NotFoundError as exc:
                out[name] = f"NotFoundError: {exc}"
        return out


    # The test says when a redeploy, a rollback or a stop is done, and which handles to call.
    # They were looked up before it: a new call follows the app's current version within the
    # handles' staleness bound (a version check per second), so poll until the results changed.
    for line in sys.stdin:
        which = line.split()
        deadline = time.monotonic() + 60
        got = call_old_handles(which)
        while any(got[k] == last[k] for k in which) and time.monotonic() < deadline:
            time.sleep(0.2)
            got = call_old_handles(which)
        last.update(got)
        print("RESULT", json.dumps(list(got.values())), flush=True)
    """
)


def _result(proc: subprocess.CompletedProcess[str]) -> dict:
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert lines, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.fixture
def head(cluster_head: dict[str, str]) -> dict[str, str]:
    return cluster_head


def _python(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )


def _write_app(folder: Path, offset: int, version: str) -> Path:
    path = folder / "demo_app.py"
    path.write_text(APP.replace("OFFSET", str(offset)).replace("VERSION", version))
    return path


def test_deploy_without_a_cluster_refuses(cli_env: dict[str, str], tmp_path: Path) -> None:
    _write_app(tmp_path, 0, "v0")
    proc = modal_cli("deploy", "demo_app.py", env=cli_env, cwd=tmp_path)
    assert proc.returncode == 1
    assert "modal-ray cluster start" in proc.stderr
    assert "MODAL_RAY_ADDRESS" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cluster_status(head: dict[str, str]) -> None:
    proc = subprocess.run(
        [str(MODAL_RAY), "cluster", "status"], env=head, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert head["MODAL_RAY_ADDRESS"] in proc.stdout
    assert "running" in proc.stdout


def test_bad_deploys_register_nothing(head: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "empty.py").write_text("x = 1\n")
    proc = modal_cli("deploy", "empty.py", env=head, cwd=tmp_path)
    assert proc.returncode == 1
    assert "has no `modal.App`" in proc.stderr
    (tmp_path / "broken.py").write_text(
        "import modal\napp = modal.App('broken')\nraise RuntimeError('import failed')\n"
    )
    proc = modal_cli("deploy", "broken.py", env=head, cwd=tmp_path)
    assert proc.returncode == 1
    assert "RuntimeError: import failed" in proc.stderr
    _write_app(tmp_path, 0, "v0")
    proc = modal_cli("deploy", "--name", "bad name", "demo_app.py", env=head, cwd=tmp_path)
    assert proc.returncode == 1
    assert "Invalid app name 'bad name'" in proc.stderr
    listed = modal_cli("app", "list", "--json", env=head, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []


def test_deploy_call_by_name_redeploy_and_stop(head: dict[str, str], tmp_path: Path) -> None:
    _write_app(tmp_path, 1000, "v1")
    deployed = modal_cli("deploy", "demo_app.py", env=head, cwd=tmp_path)
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    # The deploying process has exited; a second process calls by name.
    first = _result(_python(CALLER, head, tmp_path))
    assert first["square"] == 1009
    assert first["via_name"] == 1016
    assert first["from_id"] == 1001
    assert first["greet"] == "hi bob v1"
    assert first["variants"] == ["blue", "deployed", "Cls('deployed-demo.Greeter', not hydrated)"]
    assert first["aio"] == 1004
    errors = first["errors"]
    assert "'no-such-app' not found in environment 'main'" in errors["missing_app"]
    assert "Function 'nope' not found in app 'deployed-demo'" in errors["missing_function"]
    assert "'Greeter' in app 'deployed-demo' is a Cls, not a Function" in errors["wrong_kind"]
    assert "not found in environment 'elsewhere'" in errors["missing_env"]
    assert "'square' in app 'deployed-demo' is a Function, not a Cls" in errors["missing_class"]
    assert "'no-such-app' not found" in errors["missing_lookup"]

    # An edited file is not the deployment: callers still run the deployed copy.
    _write_app(tmp_path, 5000, "edited")
    assert _result(_python(CALLER, head, tmp_path))["square"] == 1009

    # Redeploy while long calls (a function's and a class method's) are in flight: they finish
    # on the old version; new lookups get the new code, and so do new calls on handles looked
    # up before the redeploy (a Function, an instance of a Cls).
    with (tmp_path / "in_flight.err").open("w+") as err:
        in_flight = subprocess.Popen(
            [sys.executable, "-c", IN_FLIGHT],
            env=head,
            cwd=tmp_path,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        try:
            _redeploy_rollback_stop(head, tmp_path, in_flight, err, first)
        finally:
            in_flight.kill()
            in_flight.wait(timeout=60)


def _told(proc: subprocess.Popen[str], err: IO[str], *calls: str) -> Any:
    """Tell the IN_FLIGHT process that the app changed and which old handles to call now; its
    next RESULT line."""
    assert proc.stdin is not None
    assert proc.stdout is not None
    if calls:
        proc.stdin.write(" ".join(calls) + "\n")
        proc.stdin.flush()
    for line in proc.stdout:
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    err.seek(0)
    raise AssertionError(err.read()[-3000:])


def _redeploy_rollback_stop(
    head: dict[str, str],
    tmp_path: Path,
    in_flight: subprocess.Popen[str],
    err: IO[str],
    first: dict,
) -> None:
    assert in_flight.stdout is not None
    started = in_flight.stdout.readline().strip()
    err.seek(0)
    assert started == "STARTED", err.read()[-3000:]
    _write_app(tmp_path, 2000, "v2")
    redeployed = modal_cli("deploy", "demo_app.py", env=head, cwd=tmp_path)
    assert redeployed.returncode == 0, redeployed.stderr[-3000:]
    before = [1009, "hi bob v1", "hi bob v1"]
    assert _told(in_flight, err) == {"old": ["v1", "v1"], "before": before}
    assert _told(in_flight, err, "square", "greet", "pool_gone") == [2009, "hi bob v2", "hi bob v2"]
    second = _result(_python(CALLER, head, tmp_path))
    assert second["app_id"] == first["app_id"]
    assert second["square"] == 2009
    assert second["greet"] == "hi bob v2"

    # A killed registry actor comes back (Ray restarts it) with its state (the SQLite file).
    kill_registry = textwrap.dedent(
        """
        import json, modal, ray
        from modal_ray.backends import get_backend
        get_backend().connect("main")
        ray.kill(ray.get_actor("modal-registry", namespace="modal-main"), no_restart=False)
        print("RESULT", json.dumps(modal.Function.from_name("deployed-demo", "square").remote(3)))
        """
    )
    assert _result(_python(kill_registry, head, tmp_path)) == 2009

    listed = modal_cli("app", "list", "--json", env=head, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    apps = {a["Description"]: a for a in json.loads(listed.stdout)}
    assert apps["deployed-demo"]["State"] == "deployed"
    assert apps["deployed-demo"]["Version"] == 2
    made = first["made"]
    assert made[0] == made[1] == second["made"][0]  # created once, then found
    assert apps["made-on-demand"]["App ID"] == made[0]

    # The class's pool outlived the process that made it: the janitor leaves deployments alone.
    serve_apps = textwrap.dedent(
        f"""
        import time, modal
        from modal_ray.backends import get_backend
        get_backend().connect("main")
        from ray import serve
        time.sleep(5)  # several janitor rounds after the callers exited
        names = [n for n in serve.status().applications if "{first["app_id"]}" in n]
        print("RESULT", __import__("json").dumps(names))
        """
    )
    assert len(_result(_python(serve_apps, head, tmp_path))) == 2  # the class's, the variant's

    # Roll back to v1: recorded as v3, and calls run v1's code again.
    rolled = modal_cli("app", "rollback", "deployed-demo", "v1", env=head, cwd=tmp_path)
    assert rolled.returncode == 0, rolled.stderr
    assert "to v1 (deployed as v3)" in rolled.stdout
    history = modal_cli("app", "history", "deployed-demo", "--json", env=head, cwd=tmp_path)
    assert history.returncode == 0, history.stderr
    versions = json.loads(history.stdout)
    assert [v["Version"] for v in versions] == ["v1", "v2", "v3"]
    assert versions[2]["Tag"] == "rollback to v1"
    rolled_back = textwrap.dedent(
        """
        import json, modal
        f = modal.Function.from_name("deployed-demo", "square")
        g = modal.Cls.from_name("deployed-demo", "Greeter")
        print("RESULT", json.dumps([f.remote(3), g().greet.remote("x")]))
        """
    )
    assert _result(_python(rolled_back, head, tmp_path)) == [1009, "hello x v1"]
    assert _told(in_flight, err, "square") == [1009]  # so does a rollback (a Function's call)

    stopped = modal_cli("app", "stop", "deployed-demo", env=head, cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert _result(_python(serve_apps, head, tmp_path)) == []
    # The handles looked up before say that the app is gone (the class method's pool is, too).
    for message in _told(in_flight, err, "square", "greet", "pool_gone"):
        assert message.startswith("NotFoundError: App 'deployed-demo' not found"), message
    gone = textwrap.dedent(
        """
        import json, modal
        try:
            modal.Function.from_name("deployed-demo", "square").hydrate()
        except modal.exception.NotFoundError as exc:
            print("RESULT", json.dumps(str(exc)))
        """
    )
    assert "App 'deployed-demo' not found" in _result(_python(gone, head, tmp_path))
