"""Operations on a long-lived cluster (issue 10, items 7 and 8): named secrets and environments
kept in the cluster's state store, seen alike by processes on other machines; `modal app logs`,
`modal container list|stop|logs`.

Another machine is played by a process whose own state store holds nothing but the head's
record (`cluster/head.json`, which tells it the head's token): whatever it sees of secrets and
environments came from the cluster. To keep subprocesses few, each process runs several `modal`
commands in-process (`BATCH`), exactly as the `modal` console script runs one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

VALUE = "s3cr3t-ops-value-9f2c"

BATCH = r"""
import contextlib, io, json, sys, traceback
from modal_ray.cli.entry_point import main

def run(*argv):
    # `modal ARGV...` in this process: (exit status, stdout)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main(list(argv))
        except SystemExit as exc:
            return (exc.code if isinstance(exc.code, int) else 1), out.getvalue()
    return 0, out.getvalue()


results = []
for step in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    rc = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            if step[0] == "python":
                exec(step[1], {"run": run})
            else:
                main(step)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            rc = 1
    results.append({"rc": rc, "out": out.getvalue(), "err": err.getvalue()})
print("RESULT " + json.dumps(results))
"""


def _machine(cluster_head: dict[str, str], folder: Path) -> dict[str, str]:
    """The environment of a process on another machine connected to the head by address."""
    head_root = Path(cluster_head["MODAL_RAY_STATE"])
    (folder / "cluster").mkdir(parents=True)
    shutil.copy(head_root / "cluster" / "head.json", folder / "cluster" / "head.json")
    return {**cluster_head, "MODAL_RAY_STATE": str(folder)}


def _batch(env: dict[str, str], steps: list[list[str]], cwd: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-c", BATCH, json.dumps(steps)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    results: list[dict[str, Any]] = json.loads(lines[-1][len("RESULT ") :])
    return results


def _ok(result: dict[str, Any]) -> str:
    assert result["rc"] == 0, result["out"][-2000:] + result["err"][-3000:]
    return str(result["out"])


@pytest.fixture
def machines(cluster_head: dict[str, str], tmp_path: Path) -> tuple[dict[str, str], ...]:
    return (_machine(cluster_head, tmp_path / "a"), _machine(cluster_head, tmp_path / "b"))


APP = """
import os
import modal

app = modal.App("ops-demo")


@app.function(secrets=[modal.Secret.from_name("ops-sec")])
def shout(x):
    print(f"ops-fn-line {x}")
    return len(os.environ["TOKEN"])


@app.cls()
class Worker:
    @modal.method()
    def work(self, x):
        print(f"ops-cls-line {x}")
        return x + 1
"""

CALLS = """
import modal
print("SHOUT", modal.Function.from_name("ops-demo", "shout").remote(1))
print("WORK", modal.Cls.from_name("ops-demo", "Worker")().work.remote(2))
"""

RESOLVE = f"""
import modal
print(modal.Secret.from_name("ops-sec")._resolve()["TOKEN"] == {VALUE!r})
try:
    modal.Secret.from_name("ops-sec", environment_name="ops-env").hydrate()
except modal.exception.NotFoundError as exc:
    print("NOTFOUND", exc)
"""

CONTAINERS = """
import json
rc, out = run("container", "list", "--json")
ours = [c for c in json.loads(out) if c["App Name"] == "ops-demo"]
cid = ours[0]["Container ID"]
rc, out = run("container", "logs", cid)
print("LOGS", json.dumps(out))
rc, out = run("container", "stop", cid, "--yes")
print("STOP", rc)
rc, out = run("container", "list", "--json")
print("AFTER", json.dumps([c["Container ID"] for c in json.loads(out)]), json.dumps(cid))
"""


def test_cluster_secrets_environments_logs_and_containers(
    cluster_head: dict[str, str], machines: tuple[dict[str, str], ...], tmp_path: Path
) -> None:
    """Machine a creates secrets and an environment, deploys an app that uses a secret and calls
    it; machine b sees all of it, reads the app's logs, lists and stops its container, and
    cleans up. Two processes in all."""
    a, b = machines
    (tmp_path / "ops_app.py").write_text(APP)
    steps_a = {
        "create": ["secret", "create", "ops-sec", f"TOKEN={VALUE}"],
        "env": ["environment", "create", "ops-env"],
        "env secret": ["secret", "create", "ops-env-only", "K=v", "-e", "ops-env"],
        "holder": [
            "python",
            "import modal; modal.App.lookup('ops-holder', create_if_missing=True,"
            " environment_name='ops-env')",
        ],
        "deploy": ["deploy", "ops_app.py"],
        "calls": ["python", CALLS],
    }
    first = dict(zip(steps_a, _batch(a, list(steps_a.values()), tmp_path), strict=True))
    for result in first.values():
        _ok(result)
    assert f"SHOUT {len(VALUE)}" in first["calls"]["out"]
    assert "WORK 3" in first["calls"]["out"]
    head_root = Path(cluster_head["MODAL_RAY_STATE"])
    assert (head_root / "secrets" / "main" / "ops-sec.json").stat().st_mode & 0o777 == 0o600

    steps_b = {
        "list": ["secret", "list", "--json"],
        "list env": ["secret", "list", "-e", "ops-env", "--json"],
        "envs": ["environment", "list", "--json"],
        "resolve": ["python", RESOLVE],
        "delete busy": ["environment", "delete", "ops-env", "--yes"],
        "stop holder": ["app", "stop", "ops-holder", "-e", "ops-env"],
        "delete unconfirmed": ["environment", "delete", "ops-env"],
        "delete": ["environment", "delete", "ops-env", "--yes"],
        "envs after": ["environment", "list", "--json"],
        "logs": ["app", "logs", "ops-demo"],
        "class logs": ["app", "logs", "ops-demo", "--function", "Worker", "--show-container-id"],
        "info": ["app", "info", "ops-demo", "--json"],
        "info table": ["app", "info", "ops-demo"],
        "function info": ["function", "info", "ops-demo.Worker", "--json"],
        "function logs": ["function", "logs", "ops-demo.shout"],
        "autoscaler": ["function", "autoscaler", "settings", "ops-demo.Worker", "--json"],
        "no autoscaler": ["function", "autoscaler", "settings", "ops-demo.shout"],
        "containers": ["python", CONTAINERS],
        "dashboard": ["app", "dashboard", "ops-demo"],
        "stop": ["app", "stop", "ops-demo"],
        "delete secret": ["secret", "delete", "ops-sec", "--yes"],
        "list after": ["secret", "list", "--json"],
    }
    second = dict(zip(steps_b, _batch(b, list(steps_b.values()), tmp_path), strict=True))

    # Secrets and environments made on machine a, seen on machine b; environments isolate.
    assert [s["Name"] for s in json.loads(_ok(second["list"]))] == ["ops-sec"]
    assert [s["Name"] for s in json.loads(_ok(second["list env"]))] == ["ops-env-only"]
    assert {"ops-env", "main"} <= {e["name"] for e in json.loads(_ok(second["envs"]))}
    resolved = _ok(second["resolve"])
    assert "True" in resolved
    assert "NOTFOUND Secret 'ops-sec' not found in environment 'ops-env'" in resolved
    assert second["delete busy"]["rc"] == 1
    assert "apps are deployed in it ('ops-holder')" in second["delete busy"]["err"]
    _ok(second["stop holder"])
    assert second["delete unconfirmed"]["rc"] == 1
    assert "--yes" in second["delete unconfirmed"]["err"]
    _ok(second["delete"])
    assert "ops-env" not in {e["name"] for e in json.loads(_ok(second["envs after"]))}

    # The app's output, info and containers.
    logs = _ok(second["logs"])
    assert "ops-fn-line 1" in logs
    assert "ops-cls-line 2" in logs
    only_class = _ok(second["class logs"])
    assert "ops-cls-line 2" in only_class
    assert "ops-fn-line" not in only_class
    assert "[ta-" in only_class
    info = json.loads(_ok(second["info"]))
    assert {o["tag"] for o in info["objects"]} == {"shout", "Worker"}
    assert "Worker" in _ok(second["info table"])
    function_info = json.loads(_ok(second["function info"]))
    assert function_info["kind"] == "Cls"
    assert function_info["methods"] == ["work"]
    assert function_info["runs_as"] == "container pool (Ray Serve)"
    function_logs = _ok(second["function logs"])
    assert "ops-fn-line 1" in function_logs
    assert "ops-cls-line" not in function_logs
    assert json.loads(_ok(second["autoscaler"]))["min_containers"] == 0
    assert second["no autoscaler"]["rc"] == 1
    assert "runs as Ray tasks" in second["no autoscaler"]["err"]
    containers = _ok(second["containers"])
    assert "ops-cls-line 2" in containers.split("LOGS", 1)[1]
    assert "STOP 0" in containers
    after, stopped = containers.split("AFTER ", 1)[1].splitlines()[0].rsplit(" ", 1)
    assert json.loads(stopped) not in json.loads(after)
    assert second["dashboard"]["rc"] == 1
    assert "without Ray's dashboard" in second["dashboard"]["err"]
    _ok(second["stop"])
    _ok(second["delete secret"])
    assert json.loads(_ok(second["list after"])) == []

    # The secrets were in the head's state store, not on either machine's; no value was printed
    # anywhere, nor written to the head's logs (runtime envs, workers, GCS).
    assert not (Path(a["MODAL_RAY_STATE"]) / "secrets").exists()
    assert not (Path(b["MODAL_RAY_STATE"]) / "secrets").exists()
    assert not (head_root / "secrets" / "ops-env").exists()
    assert (head_root / "environments.json").stat().st_mode & 0o777 == 0o600
    for result in [*first.values(), *second.values()]:
        assert VALUE not in result["out"] + result["err"]
    head = json.loads((head_root / "cluster" / "head.json").read_text())
    logs_dir = Path(head["session_dir"]) / "logs"
    assert logs_dir.is_dir()
    for path in logs_dir.rglob("*"):
        if path.is_file():
            assert VALUE.encode() not in path.read_bytes(), path


def test_account_commands_explain_and_local_environments(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Without a cluster: no token, profile or config file is needed (the commands say where the
    cluster is configured), and environments live in this machine's state store."""
    results = _batch(
        cli_env,
        [
            ["token", "info"],
            ["setup"],
            ["token", "set", "--token-id", "ak-1", "--token-secret", "as-1"],
            ["profile", "list", "--json"],
            ["profile", "activate", "work"],
            ["config", "show", "--json"],
            ["config", "set-environment", "nope"],
            ["environment", "create", "local-env"],
            ["config", "set-environment", "local-env"],
            ["environment", "list", "--json"],
            ["environment", "update", "local-env", "--set-name", "renamed-env"],
            ["environment", "delete", "renamed-env", "--yes"],
            ["environment", "list", "--json"],
            ["container", "list"],
        ],
        tmp_path,
    )
    for index in (0, 1, 2):
        out = _ok(results[index])
        assert "needs no Modal token" in out
        assert "modal-ray cluster start" in out
    assert "not stored" in results[2]["out"]
    profile = json.loads(_ok(results[3]))
    assert profile[0]["environment"] == "main"
    assert results[4]["rc"] == 1
    assert "MODAL_RAY_ADDRESS" in results[4]["err"]
    config = json.loads(_ok(results[5]))
    assert config["state"] == cli_env["MODAL_RAY_STATE"]
    assert config["address"] is None
    assert results[6]["rc"] == 1
    assert "Environment 'nope' not found" in results[6]["err"]
    _ok(results[7])
    assert "export MODAL_ENVIRONMENT=local-env" in _ok(results[8])
    assert [e["name"] for e in json.loads(_ok(results[9]))] == ["main", "local-env"]
    _ok(results[10])
    _ok(results[11])
    assert [e["name"] for e in json.loads(_ok(results[12]))] == ["main"]
    assert results[13]["rc"] == 1
    assert "modal-ray cluster start" in results[13]["err"]
    assert (Path(cli_env["MODAL_RAY_STATE"]) / "environments.json").exists()
