"""The sync / `.aio` mechanism (`modal_ray.synchronizer`) without an engine behind it."""

from __future__ import annotations

import asyncio
import inspect

import pytest

import modal
from modal.exception import AsyncUsageWarning, NotFoundError, UnimplementedError


def test_blocking_call_in_event_loop_warns_at_the_callers_line() -> None:
    # Each form reaches `check_blocking_call` through a different depth of our own frames; the
    # warning must name the user's line every time.
    d = modal.Dict.from_name("never-created")

    async def main() -> None:
        with pytest.raises(UnimplementedError):
            modal.interact()  # a coroutine run on the private loop
        # A store operation driven in the caller's thread. Run alone, starting Ray is refused
        # (see conftest.py); after the integration tests, Ray is up and the Dict is missing.
        with pytest.raises((RuntimeError, NotFoundError)):
            d.len()

    with pytest.warns(AsyncUsageWarning) as record:
        asyncio.run(main())
    assert [w.filename for w in record] == [__file__, __file__]


def test_bound_forms_keep_name_doc_and_signature() -> None:
    d = modal.Dict.from_name("never-created")
    assert repr(d.get) == "<modal method Dict.get>"
    assert repr(modal.Queue.ephemeral) == "<modal method Queue.ephemeral>"
    assert d.get.__doc__ == modal.Dict.get.__doc__
    assert d.get.__doc__ is not None
    assert "default" in d.get.__doc__
    assert list(inspect.signature(d.get).parameters) == ["self", "key", "default"]
    app = modal.App()
    assert list(inspect.signature(app.run).parameters)[1:] == [
        "name",
        "client",
        "detach",
        "interactive",
        "environment_name",
    ]
    assert callable(app.run.aio)
    assert callable(modal.Volume.ephemeral.aio)
