"""Test-wide environment: never attach to a foreign Ray, keep state in a temporary store."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

os.environ.pop("RAY_ADDRESS", None)
os.environ.pop("MODAL_RAY_ADDRESS", None)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
_STATE = tempfile.mkdtemp(prefix="modal-ray-state-")
os.environ["MODAL_RAY_STATE"] = _STATE
# The store is the test run's own: nothing of it outlives the run.
atexit.register(shutil.rmtree, _STATE, ignore_errors=True)


_E2E = Path(__file__).parent / "e2e"
# The deployed-app tests share one `modal-ray cluster start` head (the `cluster_head` fixture).
_HEAD_MODULES = frozenset(
    f"tests/e2e/{p.name}" for p in _E2E.glob("test_*.py") if "cluster_head" in p.read_text()
)


def _scope(nodeid: str) -> str:
    """What must run on one worker: the integration tests share one in-process Ray, the
    deployed-app tests one cluster head. Every other test is its own unit."""
    if nodeid.startswith("tests/integration/"):
        return "integration"
    if nodeid.split("::", 1)[0] in _HEAD_MODULES:
        return "cluster-head"
    return nodeid


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With `pytest -n 2` (the README's and CI's command), the workers are scheduled by `_scope`
    (xdist's own `xdist_group` marks are lost on pytest 9.2's node ids): the integration tests
    share one worker's Ray, the deployed-app tests one cluster head."""
    from xdist.scheduler import LoadScopeScheduling

    class SharedResourceScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return _scope(nodeid)

    return SharedResourceScheduling(config, log)
