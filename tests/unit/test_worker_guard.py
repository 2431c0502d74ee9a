"""A Ray worker whose environment an image changed survives a package that Ray imports when it
is installed (not a Ray requirement) but that the image's pins left unimportable."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from modal_ray.backends.ray import worker_guard
from modal_ray.backends.ray.tasks import task_options
from modal_ray.specs import Resources

# What a worker does as it first (de)serializes anything: Ray's optional Arrow serializers;
# first as Ray alone does it, then with the guard installed.
WORKER = textwrap.dedent(
    """
    from ray._private import arrow_serialization
    try:
        arrow_serialization._register_custom_datasets_serializers(None)
    except ImportError as exc:
        print("ray alone:", exc)
    from modal_ray.backends.ray import worker_guard
    worker_guard.install()
    arrow_serialization._register_custom_datasets_serializers(None)
    print("worker alive")
    """
)


def test_an_unimportable_optional_package_does_not_kill_the_worker(tmp_path: Path) -> None:
    broken = tmp_path / "pyarrow"
    broken.mkdir()
    (broken / "__init__.py").write_text(
        'raise ImportError("pyarrow requires NumPy 2.0 or newer, found 1.26.4")\n'
    )
    result = subprocess.run(
        [sys.executable, "-c", WORKER],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": f"{tmp_path}:{':'.join(p for p in sys.path if p)}", "PATH": "/bin"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "ray alone: pyarrow requires NumPy 2.0 or newer, found 1.26.4",  # the worker died here
        "worker alive",
    ]
    assert "pyarrow is installed in this worker's environment but cannot be" in result.stderr
    assert "requires NumPy 2.0" in result.stderr


def test_only_environments_that_install_packages_get_the_guard() -> None:
    from ray._private.ray_constants import WORKER_PROCESS_SETUP_HOOK_ENV_VAR as HOOK_VAR

    for installer in ("uv", "pip"):
        env = {installer: {"packages": ["numpy<2"]}, "env_vars": {"A": "1"}}
        opts = task_options(Resources(), env, "f")
        assert opts["runtime_env"]["env_vars"] == {"A": "1", HOOK_VAR: worker_guard.HOOK}
    plain = task_options(Resources(), {"env_vars": {"A": "1"}}, "f")
    assert plain["runtime_env"] == {"env_vars": {"A": "1"}}
