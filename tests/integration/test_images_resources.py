"""Images become runtime_env + worker setup; resource requests map to Ray and fail clearly."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

import modal
from modal.exception import InvalidError

image = (
    modal.Image.debian_slim()
    .env({"IMAGE_VAR": "from-image"})
    .add_local_file(__file__, "/tmp/modal-ray-test-image/test_file.py")
)

app = modal.App("test-images")


@app.function(image=image)
def image_view() -> dict[str, object]:
    path = Path("/tmp/modal-ray-test-image/test_file.py")
    return {
        "IMAGE_VAR": os.environ.get("IMAGE_VAR"),
        "file": path.read_text() if path.exists() else None,
    }


@app.function(gpu="T4")
def gpu_view() -> str | None:
    return os.environ.get("CUDA_VISIBLE_DEVICES")


@app.function(gpu="H100")
def wants_h100() -> int:
    return 1


@app.function(gpu="H100")
def h100_view() -> str | None:
    return os.environ.get("CUDA_VISIBLE_DEVICES")


@app.cls(gpu="H100:2", cpu=0.1)
class H100Pool:
    @modal.method()
    def view(self) -> str | None:
        return os.environ.get("CUDA_VISIBLE_DEVICES")


@app.function(cpu=64)
def wants_many_cpus() -> int:
    return 1


with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the one-time "memory limits are not enforced" warning

    @app.function(memory=(256, 512))
    def modest_memory() -> int:
        return 2


@pytest.fixture(scope="module")
def running():  # type: ignore[no-untyped-def]
    with app.run():
        yield app


def test_image_env_and_local_file(running: modal.App) -> None:
    view = image_view.remote()
    assert view["IMAGE_VAR"] == "from-image"
    assert view["file"] == Path(__file__).read_text()


def test_gpu_request_gets_a_gpu(running: modal.App) -> None:
    # The session Ray has one logical GPU labelled T4: the task is assigned device 0.
    assert gpu_view.remote() == "0"


def test_infeasible_requests_fail_instead_of_hanging(running: modal.App) -> None:
    with pytest.raises(InvalidError, match="H100") as refused:
        wants_h100.remote()
    assert "MODAL_RAY_GPU_FALLBACK=cpu" in str(refused.value)  # the operator's switch, named
    with pytest.raises(InvalidError, match="cpu=64"):
        wants_many_cpus.remote()


def test_memory_tuple_reserves_request(running: modal.App) -> None:
    assert modest_memory.remote() == 2


def test_gpu_fallback_runs_a_missing_gpu_type_without_a_gpu(
    running: modal.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The operator's switch: a GPU that no node has runs without one, with a warning.
    monkeypatch.setenv("MODAL_RAY_GPU_FALLBACK", "cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert h100_view.remote() in (None, "")
        assert H100Pool().view.remote() in (None, "")
    said = [str(w.message) for w in caught if "MODAL_RAY_GPU_FALLBACK=cpu" in str(w.message)]
    assert len(said) == 2, said  # once per GPU spelling
    assert "gpu='H100'" in said[0]
    assert "gpu='H100:2'" in said[1]
    # A GPU the cluster has is still given.
    assert gpu_view.remote() == "0"
