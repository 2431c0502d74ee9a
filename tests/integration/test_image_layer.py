"""An image whose packages cannot live beside the worker runtime still runs, in a layer.

The image pins (through a local, offline index of wheels made here) a package that needs
`croniter<2`, while modal-ray's runtime needs `croniter>=2.0`. Installed together they conflict,
so the image's packages go to a separate layer: a process the function starts gets the image's
croniter (and the layer's console script, on PATH), while the function itself keeps the runtime's.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import modal
from tests.support.wheels import make_wheel


def test_conflicting_image_packages_run_in_their_own_layer(tmp_path: Path) -> None:
    links = tmp_path / "links"
    links.mkdir()
    # An old croniter, which the runtime (croniter>=2.0) cannot run with.
    make_wheel(
        links,
        "croniter",
        "1.0",
        {"croniter.py": "FAKE = 'image-1.0'\n"},
    )
    make_wheel(
        links,
        "wants-old-croniter",
        "1.0",
        {
            "wants_old_croniter.py": (
                "import croniter\ndef main():\n    print(croniter.FAKE, croniter.__file__)\n"
            ),
            "wants_old_croniter-1.0.dist-info/entry_points.txt": (
                "[console_scripts]\nold-croniter = wants_old_croniter:main\n"
            ),
        },
        requires=["croniter<2"],
    )
    image = modal.Image.debian_slim().pip_install(
        "wants-old-croniter==1.0", find_links=str(links), extra_options="--no-index"
    )
    app = modal.App("test-image-layer")

    @app.function(image=image, serialized=True)
    def probe() -> dict[str, str]:
        import os

        import croniter  # the runtime's, ahead of the layer

        script = subprocess.run(["old-croniter"], capture_output=True, text=True, check=True)
        child = subprocess.run(
            [sys.executable, "-c", "import croniter; print(croniter.FAKE)"],
            capture_output=True,
            text=True,
            check=True,
        )
        return {
            "own": getattr(croniter, "FAKE", "runtime"),
            "script": script.stdout.strip(),
            "child": child.stdout.strip(),
            "pythonpath": os.environ.get("PYTHONPATH", ""),
        }

    @app.function(serialized=True)
    def after() -> str:
        import os

        return os.environ.get("PYTHONPATH", "")

    with app.run():
        with pytest.warns(UserWarning, match="croniter<2.*separate layer"):
            seen = probe.remote()
        assert seen["own"] == "runtime"
        assert seen["child"] == "image-1.0"
        assert seen["script"].startswith("image-1.0 ")
        assert "modal-ray-layers" in seen["script"]
        layer = Path(seen["pythonpath"].split(":")[0])
        assert layer.parts[-4] == "modal-ray-layers"
        assert layer.name == "site-packages"
        assert str(layer) not in after.remote()  # restored after the input
    # The session Ray outlives the test: its layer goes now (an embedded Ray's goes with it).
    shutil.rmtree(layer.parents[2])
