"""Integration tests share one real local Ray, started once per session (the notebook path:
`ray.init(...)` is called first, and modal-ray uses that connection as it is). After each test,
`cleanup_after_test` removes the Serve applications and named Dicts/Queues it created."""

from __future__ import annotations

import pytest

from tests.support.cleanup import cleanup_after_test  # noqa: F401 - autouse fixture
from tests.support.ray_cluster import ray_session  # noqa: F401 - fixture


@pytest.fixture(autouse=True)
def _ray(ray_session: None) -> None:  # noqa: F811
    return
