"""On a cluster reached by address: source shipping, and no pools left by a killed driver."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

DRIVER = textwrap.dedent(
    """
    import os, signal
    import modal

    app = modal.App("doomed")

    @app.cls(cpu=0.1)
    class Pool:
        @modal.method()
        def ping(self):
            return "pong"

    with app.run():
        assert Pool().ping.remote() == "pong"
        print("READY", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """
)

WATCHER = textwrap.dedent(
    """
    import sys, time, ray
    from ray import serve

    ray.init(address=sys.argv[1], logging_level="ERROR")
    def pools():
        return [n for n in serve.status().applications if n.startswith("modal-")]
    seen = pools()
    deadline = time.monotonic() + 90
    while pools() and time.monotonic() < deadline:
        time.sleep(1)
    print("SEEN", len(seen), "LEFT", len(pools()))
    """
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 4})
    yield c
    c.shutdown()


def _env(address: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MODAL_RAY_ADDRESS")}
    env.update(MODAL_RAY_ADDRESS=address, RAY_AUTH_MODE="disabled")
    return env


def test_pools_of_a_killed_driver_are_deleted(cluster: object, tmp_path: Path) -> None:
    address = cluster.address  # type: ignore[attr-defined]
    (tmp_path / "driver.py").write_text(DRIVER)
    (tmp_path / "watcher.py").write_text(WATCHER)
    driver = subprocess.run(
        [sys.executable, "driver.py"],
        cwd=tmp_path,
        env=_env(address),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert "READY" in driver.stdout, driver.stderr[-3000:]
    assert driver.returncode == -9
    watcher = subprocess.run(
        [sys.executable, "watcher.py", address],
        cwd=tmp_path,
        env=_env(address),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert watcher.returncode == 0, watcher.stderr[-3000:]
    seen, left = watcher.stdout.split()[1], watcher.stdout.split()[3]
    assert int(left) == 0, watcher.stdout
    assert int(seen) <= 1


PACKAGE = textwrap.dedent(
    """
    import modal

    app = modal.App("shipped")

    @app.function(cpu=0.1)
    def where() -> str:
        import shippedpkg.jobs
        return shippedpkg.jobs.__file__
    """
)

SHIP_DRIVER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    from shippedpkg.jobs import app, where

    with app.run():
        print("FILE", where.remote())
    """
)


def test_user_package_is_shipped_to_the_cluster(cluster: object, tmp_path: Path) -> None:
    src = tmp_path / "src" / "shippedpkg"
    src.mkdir(parents=True)
    (src / "__init__.py").write_text("")
    (src / "jobs.py").write_text(PACKAGE)
    (tmp_path / "driver.py").write_text(SHIP_DRIVER)
    result = subprocess.run(
        [sys.executable, "driver.py", str(tmp_path / "src")],
        cwd=tmp_path,
        env=_env(cluster.address),  # type: ignore[attr-defined]
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    worker_file = result.stdout.split("FILE", 1)[1].strip()
    # The worker imported the package from what Ray unpacked, not from the driver's folder.
    assert "runtime_resources" in worker_file, worker_file
    assert str(tmp_path) not in worker_file
