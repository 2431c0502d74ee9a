"""The one local Ray of an integration test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    import os

    import ray

    # One attempt at a runtime_env that fails (Ray's default: three), for tests about images
    # whose packages the installer refuses; read by Ray's runtime_env agent as it starts.
    saved = os.environ.get("RUNTIME_ENV_RETRY_TIMES")
    os.environ["RUNTIME_ENV_RETRY_TIMES"] = "1"
    ray.init(
        address="local",
        num_cpus=4,
        num_gpus=1,
        resources={"accelerator_type:T4": 1},
        include_dashboard=False,
        object_store_memory=512 * 1024 * 1024,
        logging_level="ERROR",
        namespace="modal-main",
    )
    session_dir = ray._private.worker._global_node.get_session_dir_path()
    if saved is None:
        os.environ.pop("RUNTIME_ENV_RETRY_TIMES")
    else:
        os.environ["RUNTIME_ENV_RETRY_TIMES"] = saved
    yield
    ray.shutdown()
    # The session's sandbox supervisor died with its Ray: remove what it left in $TMPDIR, as a
    # `modal run` does at exit.
    from modal_ray.sandbox_runtime.owners import sweep_dead_owners

    sweep_dead_owners()
    # Ray keeps every session's folder (logs, sockets, runtime envs) under its temp root.
    import shutil

    shutil.rmtree(session_dir, ignore_errors=True)
