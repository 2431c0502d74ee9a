"""Schedules of a deployed app (issue 10 item 6), on the session's `modal-ray cluster start` head:
they fire after the deploying process exited, once per tick while two clients are connected
(one scheduler per environment); a killed scheduler comes back with its state (the ticks it
fired) and fires no tick twice; `modal app stop` leaves nothing firing."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from modal_ray.schedules import MAX_IN_FLIGHT
from tests.e2e.conftest import MODAL, modal_cli

APP = textwrap.dedent(
    """
    import time

    import modal

    app = modal.App("scheduled-demo")


    @app.function(schedule=modal.Period(seconds=2))
    def tick():
        with open(OUT, "a") as f:
            f.write(f"{time.time()}\\n")
    """
)

# A client connected to the cluster (it looks the app up) until the marker file appears.
CLIENT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import modal

    modal.Function.from_name("scheduled-demo", "tick").hydrate()
    print("CONNECTED", flush=True)
    while not Path(sys.argv[1]).exists():
        time.sleep(0.1)
    """
)

OBSERVER = textwrap.dedent(
    """
    import json, subprocess, sys, time
    from pathlib import Path
    import modal
    from modal_ray import config
    from modal_ray.backends.ray import scheduler

    out = Path(sys.argv[1])
    modal.Function.from_name("scheduled-demo", "tick").hydrate()  # connected, too
    env = config.environment_name()

    def fired():
        return len(out.read_text().splitlines()) if out.exists() else 0

    def wait_for(n):
        deadline = time.monotonic() + 90
        while fired() < n and time.monotonic() < deadline:
            time.sleep(0.1)
        return fired()

    result = {"first": wait_for(2), "before": scheduler.status(env)}
    result["killed"] = scheduler.kill(env)
    result["second"] = wait_for(result["first"] + 2)
    result["after"] = scheduler.status(env)
    # `modal app stop`, then the scheduler's status once its calls in flight have ended.
    stop = subprocess.run([sys.argv[2], "app", "stop", "scheduled-demo"], capture_output=True)
    result["stop"] = [stop.returncode, stop.stderr.decode()[-3000:]]
    deadline = time.monotonic() + 90
    while (status := scheduler.status(env))["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.2)
    result["stopped"], result["lines"] = status, fired()
    time.sleep(3)  # more than a period: a live schedule would fire again
    result["later"] = fired()
    print("RESULT", json.dumps(result))
    """
)


def _python(code: str, *args: str, env: dict[str, str], cwd: Path) -> Any:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert lines, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT ") :])


def _key(status: dict[str, Any]) -> str:
    """The fire-state key of the app's one schedule."""
    keys = [s["key"] for s in status["schedules"] if s["target"][0] == "scheduled-demo"]
    assert len(keys) == 1, status["schedules"]
    return str(keys[0])


def test_deployed_period_fires_once_per_tick_survives_a_killed_scheduler_and_stops(
    cluster_head: dict[str, str], tmp_path: Path
) -> None:
    env = cluster_head
    out = tmp_path / "ticks.txt"
    (tmp_path / "sched_app.py").write_text(APP.replace("OUT", repr(str(out))))
    deployed = modal_cli("deploy", "sched_app.py", env=env, cwd=tmp_path)
    assert deployed.returncode == 0, deployed.stderr[-3000:]

    # The deploying process has exited. Two more clients connect while it fires.
    done = tmp_path / "done"
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT, str(done)],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert client.stdout is not None
        assert client.stdout.readline().strip() == "CONNECTED", client.stderr
        seen = _python(OBSERVER, str(out), str(MODAL), env=env, cwd=tmp_path)
    finally:
        done.touch()
        client.wait(timeout=60)
    assert client.returncode == 0

    assert seen["first"] >= 2, seen  # fired at least twice after the deploy exited
    before, after = seen["before"], seen["after"]
    assert seen["killed"]
    assert after["pid"] != before["pid"]  # a new scheduler process...
    key = _key(before)
    assert _key(after) == key
    old, new = before["fired"][key], after["fired"][key]
    ticks_before = sorted(old["fired"] + old["skipped"])
    ticks = sorted(new["fired"] + new["skipped"])
    assert ticks[: len(ticks_before)] == ticks_before  # ...that kept the old one's state
    assert len(new["fired"]) >= len(old["fired"]) + 2  # and fired on
    steps = [b - a for a, b in itertools.pairwise(ticks)]
    assert all(s >= 2.0 and (s / 2.0).is_integer() for s in steps), steps  # whole periods

    assert seen["stop"][0] == 0, seen["stop"][1]  # `modal app stop`
    stopped = seen["stopped"]
    assert stopped["schedules"] == []  # nothing left to fire
    assert stopped["in_flight"] == 0
    # One call per tick: as many lines as ticks called, never more (a tick fired twice would
    # add one); calls in flight when the scheduler was killed may have been lost with it.
    called = len(stopped["fired"][key]["fired"])
    assert called - MAX_IN_FLIGHT <= seen["lines"] <= called
    assert seen["later"] == seen["lines"]  # and nothing fired after the stop
