"""Test-wide environment: never attach to a foreign Ray, keep state in a temporary store."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ.pop("RAY_ADDRESS", None)
os.environ.pop("MODAL_RAY_ADDRESS", None)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
_STATE = tempfile.mkdtemp(prefix="modal-ray-state-")
os.environ["MODAL_RAY_STATE"] = _STATE
# The store is the test run's own: nothing of it outlives the run.
atexit.register(shutil.rmtree, _STATE, ignore_errors=True)


def pytest_collection_modifyitems(config: object, items: list[object]) -> None:
    """Under pytest-xdist (`--dist loadgroup`), tests that share a session resource run on one
    worker: the integration tests share one in-process Ray, the deployed-app tests one
    `modal-ray cluster start` head. Everything else (unit tests, the CLI's subprocesses) is
    spread over the workers."""
    import pytest

    for item in items:
        path = str(getattr(item, "path", ""))
        fixtures = getattr(item, "fixturenames", ())
        if f"{os.sep}integration{os.sep}" in path:
            item.add_marker(pytest.mark.xdist_group("ray-session"))  # type: ignore[attr-defined]
        elif "cluster_head" in fixtures:
            item.add_marker(pytest.mark.xdist_group("cluster-head"))  # type: ignore[attr-defined]
