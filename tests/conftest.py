"""Test-wide environment: never attach to a foreign Ray, keep state in a temporary store."""

from __future__ import annotations

import os
import tempfile

os.environ.pop("RAY_ADDRESS", None)
os.environ.pop("MODAL_RAY_ADDRESS", None)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ["MODAL_RAY_STATE"] = tempfile.mkdtemp(prefix="modal-ray-state-")
