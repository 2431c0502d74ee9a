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

results = []
for step in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    rc = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            if step[0] == "python":
                exec(step[1], {})
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
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    results: list[dict[str, Any]] = json.loads(lines[-1][len("RESULT ") :])
    return results


def _ok(result: dict[str, Any]) -> str:
    assert result["rc"] == 0, result["out"][-2000:] + result["err"][-3000:]
    return str(result["out"])


@pytest.fixture
def machines(cluster_head: dict[str, str], tmp_path: Path) -> tuple[dict[str, str], ...]:
    return (_machine(cluster_head, tmp_path / "a"), _machine(cluster_head, tmp_path / "b"))


def test_secrets_and_environments_live_on_the_cluster(
    cluster_head: dict[str, str], machines: tuple[dict[str, str], ...], tmp_path: Path
) -> None:
    a, b = machines
    first = _batch(
        a,
        [
            ["secret", "create", "ops-sec", f"TOKEN={VALUE}"],
            ["environment", "create", "ops-env"],
            ["secret", "create", "ops-env-only", "K=v", "-e", "ops-env"],
            [
                "python",
                "import modal; modal.App.lookup('ops-holder', create_if_missing=True,"
                " environment_name='ops-env')",
            ],
        ],
        tmp_path,
    )
    for result in first:
        _ok(result)
    head_root = Path(cluster_head["MODAL_RAY_STATE"])
    assert (head_root / "secrets" / "main" / "ops-sec.json").stat().st_mode & 0o777 == 0o600
    second = _batch(
        b,
        [
            ["secret", "list", "--json"],
            ["secret", "list", "-e", "ops-env", "--json"],
            ["environment", "list", "--json"],
            [
                "python",
                "import modal\n"
                "print(modal.Secret.from_name('ops-sec')._resolve()['TOKEN'] == "
                f"{VALUE!r})\n"
                "try:\n"
                "    modal.Secret.from_name('ops-sec', environment_name='ops-env').hydrate()\n"
                "except modal.exception.NotFoundError as exc:\n"
                "    print('NOTFOUND', exc)\n",
            ],
            ["environment", "delete", "ops-env", "--yes"],
            ["app", "stop", "ops-holder", "-e", "ops-env"],
            ["environment", "delete", "ops-env"],  # no confirmation: refused
            ["environment", "delete", "ops-env", "--yes"],
            ["environment", "list", "--json"],
            ["secret", "delete", "ops-sec", "--yes"],
            ["secret", "list", "--json"],
        ],
        tmp_path,
    )
    assert [s["Name"] for s in json.loads(_ok(second[0]))] == ["ops-sec"]
    assert [s["Name"] for s in json.loads(_ok(second[1]))] == ["ops-env-only"]
    assert {"ops-env", "main"} <= {e["name"] for e in json.loads(_ok(second[2]))}
    resolved = _ok(second[3])
    assert "True" in resolved  # the value created on machine a, resolved on machine b
    assert "NOTFOUND Secret 'ops-sec' not found in environment 'ops-env'" in resolved
    assert second[4]["rc"] == 1
    assert "apps are deployed in it ('ops-holder')" in second[4]["err"]
    _ok(second[5])
    assert second[6]["rc"] == 1 and "--yes" in second[6]["err"]
    _ok(second[7])
    assert "ops-env" not in {e["name"] for e in json.loads(_ok(second[8]))}
    _ok(second[9])
    assert json.loads(_ok(second[10])) == []

    # The secrets were on the head's state store (0600), not on either machine's; no value was
    # ever printed.
    assert not (Path(a["MODAL_RAY_STATE"]) / "secrets").exists()
    assert not (Path(b["MODAL_RAY_STATE"]) / "secrets").exists()
    assert not (head_root / "secrets" / "ops-env").exists()
    assert (head_root / "environments.json").stat().st_mode & 0o777 == 0o600
    for result in first + second:
        assert VALUE not in result["out"] + result["err"]
