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
