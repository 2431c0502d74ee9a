"""How modal-ray finds its Ray: embedded and private by default, or the cluster at an address."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

PROBE = textwrap.dedent(
    """
    import json, os, sys
    import modal

    app = modal.App("probe")

    @app.function()
    def where():
        import os
        return os.environ.get("MODAL_IS_REMOTE")

    with app.run():
        remote_flag = where.remote()
        import ray
        ctx = ray.get_runtime_context()
        node = ray._private.worker.global_worker.node
        print(json.dumps({
            "gcs": ctx.gcs_address,
            "namespace": ctx.namespace,
            "remote_flag": remote_flag,
            "auth_mode": os.environ.get("RAY_AUTH_MODE"),
            "dashboard": node.address_info.get("webui_url"),
            "mode": __import__("modal_ray.backends.ray.runtime", fromlist=["x"]).mode(),
        }))
    """
)


@pytest.fixture(scope="module")
def foreign_cluster() -> Iterator[object]:
    """Some other Ray on this machine, started the way `ray start` would."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 2})
    yield cluster
    cluster.shutdown()


def _run_probe(tmp_path: Path, **env_overrides: str) -> dict[str, object]:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_ADDRESS", "MODAL_RAY_ADDRESS", "RAY_AUTH_MODE")
    }
    env.update(MODAL_RAY_NUM_CPUS="2", **env_overrides)
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Token authentication is enabled" not in result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_embedded_ray_is_private_and_keeps_token_auth(
    tmp_path: Path, foreign_cluster: object
) -> None:
    info = _run_probe(tmp_path, MODAL_ENVIRONMENT="dev")
    assert info["mode"] == "embedded"
    assert info["gcs"] != foreign_cluster.address  # type: ignore[attr-defined]
    assert info["namespace"] == "modal-dev"
    assert info["remote_flag"] == "1"
    assert info["auth_mode"] == "token"
    assert not info["dashboard"]


def test_address_connects_to_that_cluster(tmp_path: Path, foreign_cluster: object) -> None:
    address = foreign_cluster.address  # type: ignore[attr-defined]
    info = _run_probe(tmp_path, MODAL_RAY_ADDRESS=address, RAY_AUTH_MODE="disabled")
    assert info["mode"] == "address"
    assert info["gcs"] == address
    assert info["namespace"] == "modal-main"
