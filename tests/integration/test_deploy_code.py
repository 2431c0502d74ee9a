"""The code of a deployed app belongs to the deployment (issue 10 item 3): the registry keeps
the package bytes, a lookup restores a package Ray dropped, and workers run the deployed copy
even after the file on disk changed. Runs on the session Ray (a process that called
`ray.init` itself may deploy: its cluster is the user's)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from ray._private.runtime_env.packaging import package_exists
from ray.experimental.internal_kv import _internal_kv_del

import modal
from modal_ray import deployment
from modal_ray.synchronizer import run_sync

SOURCE = """
import modal

app = modal.App("pinned-code")


@app.function()
def add(x):
    return x + OFFSET
"""


@pytest.fixture
def deployed_module(tmp_path: Path) -> Iterator[object]:
    (tmp_path / "pinned_code_mod.py").write_text(SOURCE.replace("OFFSET", "40"))
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module("pinned_code_mod")
        module.app.deploy()
        yield module
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("pinned_code_mod", None)
        run_sync(deployment.stop_app("pinned-code", None))
        ray.kill(ray.get_actor("modal-registry", namespace="modal-main"), no_restart=True)


def test_a_dropped_package_is_restored_from_the_registry(
    deployed_module: object, tmp_path: Path
) -> None:
    f = modal.Function.from_name("pinned-code", "add")
    f.hydrate()
    uris = [m for m in f._compiled.spec.runtime_env["py_modules"] if m.startswith("gcs://")]
    assert uris
    for uri in uris:  # what Ray's garbage collection does once no job uses the package
        _internal_kv_del(uri)
        assert not package_exists(uri)
    (tmp_path / "pinned_code_mod.py").write_text(SOURCE.replace("OFFSET", "1000"))  # not deployed
    again = modal.Function.from_name("pinned-code", "add")
    assert again.remote(2) == 42
    assert all(package_exists(uri) for uri in uris)
