"""An image's packages never replace what the worker runtime (Ray, modal-ray) needs.

The package list an image hands to Ray is resolved here by the real pip (`--dry-run`, offline,
from wheels made in the test), as Ray's runtime_env installs it; nothing is installed."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from modal.image import Image
from modal_ray.image.runtime_requirements import runtime_requirements
from tests.support.wheels import make_wheel


def _wheel(folder: Path, name: str, version: str, requires: list[str]) -> None:
    make_wheel(folder, name, version, requires=requires)


def _resolve(image: Image, links: Path) -> tuple[int, str, set[str]]:
    """pip's verdict on the image's package list: (exit status, output, names it would install)."""
    pip = image._runtime_env()["pip"]
    req, report = links / "requirements.txt", links / "report.json"
    req.write_text("\n".join(pip["packages"]) + "\n")
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--isolated", "--dry-run"),
            *("--no-index", "--find-links", str(links), "--report", str(report), "-r", str(req)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    names: set[str] = set()
    if done.returncode == 0:
        names = {item["metadata"]["name"] for item in json.loads(report.read_text())["install"]}
    return done.returncode, done.stdout + done.stderr, names


@pytest.fixture
def links(tmp_path: Path) -> Path:
    # An old protobuf (as `streamlit~=1.35` needs) is on offer: today's Ray cannot run with it.
    _wheel(tmp_path, "protobuf", "4.25.9", [])
    _wheel(tmp_path, "wants-old-protobuf", "1.0", ["protobuf<5"])
    _wheel(tmp_path, "accepts-protobuf", "1.0", ["protobuf>=3.20"])
    return tmp_path


def test_a_package_that_would_downgrade_a_runtime_dependency_is_refused(links: Path) -> None:
    image = Image.debian_slim().pip_install("wants-old-protobuf")
    status, output, would_install = _resolve(image, links)
    assert "protobuf" not in would_install  # the worker's protobuf is never replaced
    assert status != 0
    assert "wants-old-protobuf 1.0 depends on protobuf<5" in output


def test_a_compatible_package_installs_and_the_runtime_stays(links: Path) -> None:
    image = Image.debian_slim().pip_install("accepts-protobuf", "protobuf>=3.20")
    status, output, would_install = _resolve(image, links)
    assert status == 0, output
    assert would_install == {"accepts-protobuf"}


def test_runtime_lines_follow_the_image_packages_for_pip_and_uv() -> None:
    lines = runtime_requirements()
    pip = Image.debian_slim().pip_install("six")._runtime_env()["pip"]["packages"]
    uv = Image.debian_slim().uv_pip_install("six")._runtime_env()["uv"]["packages"]
    assert pip == ["six", *lines]
    assert uv == ["six", *lines]
    reqs = {str(canonicalize_name(Requirement(line).name)): Requirement(line) for line in lines}
    assert str(reqs["ray"].specifier) == f"=={metadata.version('ray')}"
    for name, req in reqs.items():  # the installed runtime satisfies every line
        assert req.specifier.contains(metadata.version(name), prereleases=True), req
    assert Image.debian_slim().env({"A": "1"})._runtime_env() == {"env_vars": {"A": "1"}}


def test_check_mode_adds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODAL_RAY_PACKAGES", "check")
    image = Image.debian_slim().pip_install("six")
    assert "pip" not in image._runtime_env()
    setup = image._worker_setup()
    assert setup is not None
    assert setup.requirements == ("six",)


def test_the_runtime_is_ray_serve_and_modal_ray_less_the_users_asgi_stack() -> None:
    names = {canonicalize_name(Requirement(line).name) for line in runtime_requirements()}
    assert {"ray", "protobuf", "msgpack", "pydantic", "grpcio"} <= names
    # A web app pins its own FastAPI/Starlette (P12: fastapi 0.116; Serve 2.60 serves with it).
    assert not {"fastapi", "starlette", "uvicorn"} & names


def test_a_runtime_package_the_image_pins_itself_is_installed_as_asked_with_a_warning() -> None:
    lines = runtime_requirements()
    image = Image.debian_slim().pip_install("pydantic==1.10.13", "protobuf>=5")
    from modal_ray import warn

    warn.reset_for_tests()  # once per process: another test of this worker may have warned
    with pytest.warns(UserWarning, match=r"'pydantic==1.10.13', outside what Ray and modal-ray"):
        packages = image._runtime_env()["pip"]["packages"]
    names = [Requirement(line).name for line in packages]
    # protobuf>=5 meets the runtime's protobuf range: that line stays; pydantic's is left out.
    assert packages[:2] == ["pydantic==1.10.13", "protobuf>=5"]
    assert names.count("pydantic") == 1
    assert names.count("protobuf") == 2
    assert any(Requirement(line).name == "pydantic" for line in lines)


def test_an_image_replacing_a_runtime_package_drops_the_ranges_only_that_package_declared() -> None:
    # The installed pydantic pins its pydantic-core exactly; an image's older pydantic (inside
    # the runtime's pydantic range) brings its own pydantic-core instead.
    assert any(line.startswith("pydantic-core==") for line in runtime_requirements())
    older = "pydantic==2.7.4"
    packages = Image.debian_slim().pip_install(older)._runtime_env()["pip"]["packages"]
    assert not any(line.startswith("pydantic-core") for line in packages)
    assert any(line.startswith("pydantic<3") for line in packages)
