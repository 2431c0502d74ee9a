"""Warnings about the user's program point at the user's line, not at modal-ray's own.

Deprecated keywords, parameters that mean nothing on Ray, and image steps Ray cannot perform
are reported with the file and line of the user's code that asked for them (the first frame
outside `modal` / `modal_ray`), as Modal does.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import pytest

import modal
from modal_ray import warn


@pytest.fixture(autouse=True)
def _fresh_warnings() -> Iterator[None]:
    warn.reset_for_tests()  # each test sees its own once-per-process warnings
    yield
    warn.reset_for_tests()


@contextlib.contextmanager
def _recorded() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        yield record


def _only(record: list[warnings.WarningMessage], text: str) -> warnings.WarningMessage:
    hits = [w for w in record if text in str(w.message)]
    assert len(hits) == 1, [str(w.message) for w in record]
    return hits[0]


def test_decorator_warnings_point_at_the_decorator() -> None:
    app = modal.App("test-warnings-decorators")
    with _recorded() as record:

        @app.function(keep_warm=1, region="us-east")  # the line the warnings name
        def f() -> None: ...

        @app.cls(container_idle_timeout=5)
        class C:
            @modal.method()
            def m(self) -> None: ...

    for text in ("keep_warm", "region=", "container_idle_timeout"):
        hit = _only(record, text)
        assert hit.filename == __file__, (text, hit.filename, hit.lineno)


def test_with_options_warning_points_at_the_call() -> None:
    app = modal.App("test-warnings-options")

    @app.function()
    def f() -> None: ...

    with _recorded() as record:
        f.with_options(cloud="aws")
    hit = _only(record, "cloud=")
    assert hit.filename == __file__, (hit.filename, hit.lineno)


image = modal.Image.debian_slim().apt_install("curl")
app = modal.App("test-warnings-image", image=image)


@app.function(cpu=0.1)
def square(x: int) -> int:
    return x * x


def test_image_warning_points_at_the_users_call() -> None:
    with app.run(), _recorded() as record:
        assert square.remote(3) == 9  # the line the warning names
    hit = _only(record, "apt_install")
    assert hit.filename == __file__, (hit.filename, hit.lineno)


mapped_image = modal.Image.debian_slim().run_commands("echo hi")
mapped_app = modal.App("test-warnings-map", image=mapped_image)


@mapped_app.function(cpu=0.1)
def double(x: int) -> int:
    return 2 * x


def test_image_warning_of_a_map_points_at_the_users_call() -> None:
    with mapped_app.run(), _recorded() as record:
        assert list(double.map(range(3))) == [0, 2, 4]  # the line the warning names
    hit = _only(record, "run_commands")
    assert hit.filename == __file__, (hit.filename, hit.lineno)
