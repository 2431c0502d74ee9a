# mypy: warn-unused-ignores
"""Checked by mypy, never run (tests/unit/test_typing.py runs mypy on it).

Each `assert_type` says what a user's editor sees for a call through the sync / `.aio` mechanism
(`modal_ray.synchronizer`). Each `# type: ignore[...]` line MUST be an error: with
`warn-unused-ignores` on, a call whose types regress to `Any` makes that ignore unused, which mypy
reports.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from typing import Any

from typing_extensions import assert_type

import modal

app = modal.App()


@app.function()
def f(x: int) -> str:
    return str(x)


@app.function()
async def af(x: int, *, scale: float = 1.0) -> bytes:
    return b""


@app.function()
@modal.concurrent(max_inputs=4)
def cf(x: int) -> float:
    return float(x)


@app.cls()
class C:
    size: int = modal.parameter(default=1)

    @modal.enter()
    def load(self) -> None:
        pass

    @modal.method()
    def m(self, y: int) -> float:
        return y * 1.5

    @modal.method()
    async def am(self, y: int) -> str:
        return str(self.m(y))  # a method calls another method locally, inside its container


def functions() -> None:
    assert_type(f.remote(3), str)
    assert_type(f.local(3), str)
    assert_type(f.map([1, 2]), Iterator[str])
    assert_type(f.starmap([(1,)]), Iterator[str])
    assert_type(f.spawn(1), modal.FunctionCall[str])
    assert_type(f.spawn(1).get(), str)
    assert_type(f.spawn(1).get(timeout=1.0), str)
    assert_type(modal.FunctionCall.gather(f.spawn(1), f.spawn(2)), Sequence[str])
    assert_type(f.hydrate().remote(1), str)
    assert_type(af.remote(3, scale=2.0), bytes)
    assert_type(af.local(3), Coroutine[Any, Any, bytes]).close()
    assert_type(cf.remote(1), float)
    f.remote("x")  # type: ignore[arg-type]
    f.spawn("x")  # type: ignore[arg-type]
    f.local("x")  # type: ignore[arg-type]
    af.remote(3, scale="big")  # type: ignore[arg-type]
    f.remote(1, 2)  # type: ignore[call-arg]


async def functions_aio() -> None:
    assert_type(await f.remote.aio(3), str)
    assert_type(f.map.aio([1, 2]), AsyncIterator[str])
    async for out in f.map.aio([1, 2]):
        assert_type(out, str)
    call = await f.spawn.aio(1)
    assert_type(call, modal.FunctionCall[str])
    assert_type(await call.get.aio(), str)
    assert_type(await af.remote.aio(1), bytes)
    await f.remote.aio("x")  # type: ignore[arg-type]


def classes() -> None:
    # `C(size=2)` type-checks under pyright (`App.cls` is a `dataclass_transform`, as in Modal);
    # mypy applies `dataclass_transform` only to decorators it can name statically, not to
    # `app.cls()`, so a mypy user passes parameters through `# type: ignore[call-arg]`.
    obj = C()
    assert_type(obj.m.remote(1), float)
    assert_type(obj.m.local(1), float)
    assert_type(obj.m.spawn(1).get(), float)
    assert_type(obj.m.map([1, 2]), Iterator[float])
    assert_type(obj.am.remote(1), str)
    obj.m.remote("x")  # type: ignore[arg-type]


async def classes_aio() -> None:
    assert_type(await C().m.remote.aio(1), float)


def stores() -> None:
    d = modal.Dict.from_name("d", create_if_missing=True)
    assert_type(d.contains("k"), bool)
    assert_type(d.len(), int)
    assert_type(d.put("k", 1), bool)
    assert_type(d.info(), modal.dict.DictInfo)
    assert_type(d.keys(), Iterator[Any])
    d.put("k")  # type: ignore[call-arg]
    q = modal.Queue.from_name("q", create_if_missing=True)
    assert_type(q.len(), int)
    assert_type(q.put(1), None)
    q.put_many(3)  # type: ignore[arg-type]
    q.get(block="yes")  # type: ignore[arg-type]
    with modal.Dict.ephemeral() as ed:
        assert_type(ed, modal.Dict)
    with modal.Queue.ephemeral() as eq:
        assert_type(eq, modal.Queue)
    with modal.Volume.ephemeral() as vol:
        assert_type(vol, modal.Volume)
        with vol.batch_upload() as batch:
            batch.put_file("a", "/a")


async def stores_aio() -> None:
    d = modal.Dict.from_name("d")
    assert_type(await d.contains.aio("k"), bool)
    assert_type(await d.len.aio(), int)
    async for key in d.keys.aio():
        assert_type(key, Any)
    await d.contains.aio()  # type: ignore[call-arg]
    q = modal.Queue.from_name("q")
    assert_type(await q.len.aio(partition="p"), int)
    async with modal.Dict.ephemeral.aio() as ed:
        assert_type(ed, modal.Dict)
    async with modal.Queue.ephemeral() as eq:
        assert_type(eq, modal.Queue)
    vol = modal.Volume.from_name("v")
    assert_type(await vol.listdir.aio("/"), list[modal.volume.FileEntry])


def app_run() -> None:
    with app.run() as running:
        assert_type(running, modal.App)
    with app.run(detach=True):
        pass
    app.run(detach="no")  # type: ignore[arg-type]


async def app_run_aio() -> None:
    async with app.run.aio() as running:
        assert_type(running, modal.App)
