"""On a shared cluster (reached by address), a second process that calls a warm class attaches
to its pool: the container stays, and `@modal.enter` runs once.

The second processes here are Ray workers of the run (a nested call, and an `update_autoscaler`
from inside a function); their runtime environment differs from the driver's (the driver ships
the app's source), so any redeploy from them would replace the container.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

DRIVER = textwrap.dedent(
    """
    import json, sys, uuid
    import modal

    app = modal.App("attach")

    @app.cls(cpu=0.1)
    class Warm:
        log: str = modal.parameter()

        @modal.enter()
        def up(self):
            self.token = uuid.uuid4().hex
            with open(self.log, "a") as f:
                f.write(self.token + "\\n")

        @modal.method()
        def token_of(self):
            return self.token

    @app.function(cpu=0.1)
    def second_client(log):
        return Warm(log=log).token_of.remote()

    @app.function(cpu=0.1)
    def second_client_rescales(log):
        obj = Warm(log=log)
        obj.token_of.remote()
        obj.update_autoscaler(max_containers=3)
        return obj.token_of.remote()

    if __name__ == "__main__":
        log = sys.argv[1]
        with app.run():
            owner = Warm(log=log)
            tokens = [owner.token_of.remote()]
            tokens.append(second_client.remote(log))
            tokens.append(owner.token_of.remote())
            owner.update_autoscaler(max_containers=2, scaledown_window=90)
            tokens.append(owner.token_of.remote())
            tokens.append(second_client_rescales.remote(log))
            tokens.append(owner.token_of.remote())
        print("RESULT", json.dumps(tokens))
    """
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 4})
    yield c
    c.shutdown()


def test_a_second_process_attaches_to_the_warm_pool(cluster: object, tmp_path: Path) -> None:
    (tmp_path / "driver.py").write_text(DRIVER)
    log = tmp_path / "enter.log"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MODAL_RAY_ADDRESS")}
    env.update(
        MODAL_RAY_ADDRESS=cluster.address,  # type: ignore[attr-defined]
        RAY_AUTH_MODE="disabled",
        PYTHONUNBUFFERED="1",
    )
    result = subprocess.run(
        [sys.executable, "driver.py", str(log)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    tokens = json.loads(result.stdout.split("RESULT", 1)[1])
    enters = log.read_text().split()
    assert len(enters) == 1, (enters, tokens)
    assert tokens == enters * len(tokens)
