"""An image's Python packages reach the sandboxes made from it (pip/uv install steps)."""

from __future__ import annotations

import pytest

import modal
from modal.exception import ImageBuildError

# `six` is small, pure Python, and not among modal-ray's or Ray's dependencies.
IMAGE = modal.Image.debian_slim().pip_install("six==1.17.0").env({"GREETING": "hi"})

PROGRAM = """
import importlib.util, os, six
print(six.__version__, os.environ["GREETING"], importlib.util.find_spec("cloudpickle") is None)
"""


def test_image_packages_are_importable_in_the_sandbox() -> None:
    sb = modal.Sandbox.create("python", "-c", PROGRAM, image=IMAGE, timeout=300)
    try:
        sb.wait(raise_on_termination=False)
        out, err = sb.stdout.read(), sb.stderr.read()
        assert sb.returncode == 0, err
        # The image's package, the image's env, and nothing of the worker's environment
        # (cloudpickle is installed where Ray's workers run, not in the image).
        assert out.split() == ["1.17.0", "hi", "True"]
        # A second sandbox of the same image reuses the install; exec sees the packages too.
        again = modal.Sandbox.create(image=IMAGE, timeout=120)
        try:
            p = again.exec("python", "-c", "import six; print(six.__name__)")
            assert p.stdout.read() == "six\n"
            assert p.wait() == 0
        finally:
            again.terminate()
    finally:
        sb.terminate()


def test_an_uninstallable_package_is_an_image_build_error() -> None:
    image = modal.Image.debian_slim().pip_install("modal-ray-no-such-package-anywhere==0.0.1")
    with pytest.raises(ImageBuildError, match="modal-ray-no-such-package-anywhere"):
        modal.Sandbox.create("true", image=image, timeout=60)
