"""Durable spawned calls on a long-lived cluster (issue 10, item 5): spawn, let the spawning process
exit, `FunctionCall.from_id(...).get()` from a third process; `spawn_map` inputs all run after the
client exited; `modal run --detach` keeps an ephemeral app's spawned work running (and without
`--detach` it is stopped with the client). Uses the session head of `modal-ray cluster start`."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import modal_cli

APP = textwrap.dedent(
    """
    import time
    from pathlib import Path

    import modal

    app = modal.App("durable-calls")


    @app.function()
    def slow_square(x, marker):
        time.sleep(2)
        Path(marker).write_text(str(x))
        return x * x


    @app.function()
    def boom():
        raise ValueError("boom from the worker")


    @app.function()
    def sleeper(seconds):
        time.sleep(seconds)
        return "woke"


    @app.function()
    def parent(x, marker):
        child = slow_square.spawn(x, marker)
        return [child.object_id, child.get(timeout=120)]


    @app.function()
    def tag(folder, key):
        Path(folder, f"{key}.done").write_text("ok")
        return key


    @app.cls()
    class Adder:
        base: int = modal.parameter(default=0)

        @modal.method()
        def add(self, a, b):
            return self.base + a + b
    """
)

SPAWNER = textwrap.dedent(
    """
    import json, sys
    import modal

    work = sys.argv[1]
    fn = lambda name: modal.Function.from_name("durable-calls", name)
    ids = {
        "square": fn("slow_square").spawn(7, f"{work}/square.txt").object_id,
        "boom": fn("boom").spawn().object_id,
        "sleeper": fn("sleeper").spawn(600).object_id,
        "stopped_with_app": fn("sleeper").spawn(600).object_id,
        "parent": fn("parent").spawn(4, f"{work}/child.txt").object_id,
        "add": modal.Cls.from_name("durable-calls", "Adder")(base=10).add.spawn(1, 2).object_id,
        "expired": fn("boom").spawn().object_id,
    }
    assert fn("tag").spawn_map([f"{work}/map"] * 25, range(25)) is None
    print("RESULT", json.dumps(ids), flush=True)
    # Exits at once: nothing above is awaited.
    """
)

GETTER = textwrap.dedent(
    """
    import asyncio, json, sys
    import modal
    from modal.exception import InputCancellation, NotFoundError, OutputExpiredError

    ids = json.loads(sys.argv[1])
    out = {}
    get = lambda name: modal.FunctionCall.from_id(ids[name])
    # A killed keeper comes back with its calls (its file): the unfinished ones run again.
    import ray
    from modal_ray.backends import get_backend
    get_backend().connect("main")
    ray.kill(ray.get_actor("modal-call-keeper", namespace="modal-main"), no_restart=False)
    out["square"] = get("square").get(timeout=120)
    out["add"] = get("add").get(timeout=120)
    out["gather"] = modal.FunctionCall.gather(get("square"), get("add"))
    out["aio"] = asyncio.run(
        modal.FunctionCall.from_id.aio(ids["add"])
    ).get(timeout=60)
    try:
        get("boom").get(timeout=120)
    except ValueError as exc:
        out["boom"] = str(exc)
    child_id, out["child"] = get("parent").get(timeout=120)
    graph = get("parent").get_call_graph()
    out["graph"] = [
        [n.function_call_id, n.status.name, [(c.function_call_id, c.status.name)
         for c in n.children]]
        for n in graph
    ]
    out["child_id"] = child_id
    sleeper = get("sleeper")
    try:
        sleeper.get(timeout=0)
    except TimeoutError:
        out["sleeper_pending"] = True
    sleeper.cancel()
    try:
        sleeper.get(timeout=60)
    except InputCancellation:
        out["sleeper_cancelled"] = True
    try:
        modal.FunctionCall.from_id("fc-0000000000000000000000").get(timeout=1)
    except NotFoundError as exc:
        out["unknown"] = str(exc)
    try:
        get("expired").get(timeout=60)
    except OutputExpiredError as exc:
        out["expired"] = str(exc)
    print("RESULT", json.dumps(out), flush=True)
    """
)


def _python(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _result(proc: subprocess.CompletedProcess[str]) -> dict:
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert lines, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT ") :])


def _wait_for(predicate: object, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def _state(state_root: Path, call_id: str) -> str | None:
    """A call's state in the head's call store (read directly from its SQLite file)."""
    db = sqlite3.connect(state_root / "calls" / "main.sqlite", timeout=30)
    try:
        row = db.execute("SELECT state FROM calls WHERE call_id = ?", (call_id,)).fetchone()
    finally:
        db.close()
    return None if row is None else str(row[0])


def _age_result(state_root: Path, call_id: str, days: float) -> None:
    """Make a finished call look `days` old in the head's call store (the keeper reads the file
    on every lookup, so retention is enforced without waiting a week)."""
    db = sqlite3.connect(state_root / "calls" / "main.sqlite", timeout=30)
    with db:
        db.execute(
            "UPDATE calls SET finished_at = ? WHERE call_id = ?",
            (time.time() - days * 86400, call_id),
        )
    db.close()


@pytest.mark.timeout(600)
def test_spawn_exit_then_get_by_id_from_a_third_process(
    cluster_head: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "durable_app.py").write_text(APP)
    (tmp_path / "map").mkdir()
    deployed = modal_cli("deploy", "durable_app.py", env=cluster_head, cwd=tmp_path)
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    stopped = None
    try:
        ids = _result(_python(["-c", SPAWNER, str(tmp_path)], cluster_head, tmp_path))
        # The spawning process has exited. Every spawn_map input still runs to the end.
        # (A generous deadline: on a loaded 2-core machine each input may start a new worker.)
        assert _wait_for(lambda: len(list((tmp_path / "map").glob("*.done"))) == 25, timeout=240)
        assert sorted(int(p.stem) for p in (tmp_path / "map").glob("*.done")) == list(range(25))
        # The failed call's result ages past the retention before the third process reads it.
        state_root = Path(cluster_head["MODAL_RAY_STATE"])
        assert _wait_for(lambda: _state(state_root, ids["expired"]) == "failure")
        _age_result(state_root, ids["expired"], days=8)

        out = _result(_python(["-c", GETTER, json.dumps(ids)], cluster_head, tmp_path))
        assert out["square"] == 49
        assert (tmp_path / "square.txt").read_text() == "7"
        assert out["add"] == 13
        assert out["gather"] == [49, 13]
        assert out["aio"] == 13
        assert out["boom"] == "boom from the worker"
        assert out["child"] == 16
        # The call spawned inside `parent` is its child in the call graph.
        assert out["graph"] == [[ids["parent"], "SUCCESS", [[out["child_id"], "SUCCESS"]]]]
        assert out["sleeper_pending"] is True
        assert out["sleeper_cancelled"] is True
        assert "fc-0000000000000000000000" in out["unknown"]
        assert "kept for 7 days" in out["expired"]
        # `modal app stop` stops the app's calls that are still running.
        assert _state(state_root, ids["stopped_with_app"]) == "pending"
        stopped = modal_cli("app", "stop", "durable-calls", env=cluster_head, cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr[-3000:]
        assert _state(state_root, ids["stopped_with_app"]) == "terminated"
    finally:
        if stopped is None:
            modal_cli("app", "stop", "durable-calls", env=cluster_head, cwd=tmp_path)


RUN_APP = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path

    import modal

    app = modal.App()


    def write_after_gate(folder, name):
        # Waits for the test to open the gate, which it does once the client has exited.
        deadline = time.monotonic() + 120
        while not Path(folder, "gate").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        Path(folder, name).write_text("done")


    @app.function()
    def late_write(folder):
        write_after_gate(folder, "function.txt")


    @app.cls()
    class Writer:
        @modal.method()
        def write(self, folder):
            write_after_gate(folder, "method.txt")


    @app.local_entrypoint()
    def main(folder: str, linger: bool = False):
        call = late_write.spawn(folder)
        Writer().write.spawn(folder)
        print("SPAWNED", call.object_id, flush=True)
        while linger:  # until the test kills this client
            time.sleep(1)
    """
)


def test_modal_run_detach_keeps_spawned_work_running(
    cluster_head: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "run_app.py").write_text(RUN_APP)
    detached, attached = tmp_path / "detached", tmp_path / "attached"
    detached.mkdir()
    attached.mkdir()

    def start(*extra: str, folder: Path) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "modal", "run", *extra, "run_app.py", "--folder", str(folder)],
            env=cluster_head,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    # One after the other: two clients starting Serve at once on a fresh cluster race.
    outputs = []
    for extra, folder in ((("--detach",), detached), ((), attached)):
        proc = start(*extra, folder=folder)
        stdout, stderr = proc.communicate(timeout=240)
        assert proc.returncode == 0, stdout[-2000:] + stderr[-4000:]
        assert "SPAWNED" in stdout
        outputs.append(stderr)
        # The client has exited: now its spawned calls may finish.
        (folder / "gate").touch()
    assert "detached: its spawned calls keep running" in outputs[0]
    # The detached run's calls finish after its client exited; the other run's were stopped.
    assert _wait_for(lambda: all((detached / n).exists() for n in ("function.txt", "method.txt")))
    time.sleep(2.0)  # the attached run's calls, had they been running, saw their gate by now
    assert sorted(p.name for p in attached.iterdir()) == ["gate"]


def test_a_killed_client_s_calls_are_stopped(cluster_head: dict[str, str], tmp_path: Path) -> None:
    # As Modal stops an ephemeral app whose client went away: the call keeper cancels the
    # calls of a run (not detached) once its driver is dead.
    (tmp_path / "run_app.py").write_text(RUN_APP)
    command = [sys.executable, "-m", "modal", "run", "run_app.py", "--folder", str(tmp_path)]
    proc = subprocess.Popen(
        [*command, "--linger"],
        env=cluster_head,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        while line and not line.startswith("SPAWNED"):
            line = proc.stdout.readline()
        assert line.startswith("SPAWNED"), "the client did not spawn"
        call_id = line.split()[1]
    finally:
        proc.kill()
        proc.wait(timeout=60)
    state_root = Path(cluster_head["MODAL_RAY_STATE"])
    assert _wait_for(lambda: _state(state_root, call_id) == "terminated", timeout=60)
    (tmp_path / "gate").touch()
    time.sleep(2.0)  # a call still running would have seen its gate and written by now
    assert not (tmp_path / "function.txt").exists()
