"""Function calls on a real local Ray: remote, local, map, starmap, for_each, spawn, generators."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import warnings
from pathlib import Path

import pytest

import modal
from modal.exception import AsyncUsageWarning, ExecutionError, InvalidError

app = modal.App("test-functions")


@app.function()
def square(x: int) -> int:
    return x * x


@app.function()
def add(a: int, b: int = 0, *, c: int = 0) -> int:
    return a + b + c


@app.function()
async def async_double(x: int) -> int:
    await asyncio.sleep(0.01)
    return 2 * x


@app.function()
def where_am_i() -> dict[str, object]:
    return {
        "is_local": modal.is_local(),
        "input_id": modal.current_input_id(),
        "call_id": modal.current_function_call_id(),
        "pid": os.getpid(),
        "env": os.environ.get("MODAL_IS_REMOTE"),
    }


@app.function()
def count_up(n: int, gate: str = ""):  # type: ignore[no-untyped-def]
    for i in range(n):
        yield i
        if gate and i == 0:
            # Wait until the caller has seen the first item: proves items stream as produced.
            deadline = time.monotonic() + 60
            while not Path(gate).exists() and time.monotonic() < deadline:
                time.sleep(0.05)


@app.function()
async def async_count(n: int):  # type: ignore[no-untyped-def]
    for i in range(n):
        await asyncio.sleep(0)
        yield i * 10


@app.function()
def fails_on(x: int, bad: int) -> int:
    if x == bad:
        raise ValueError(f"bad input {x}")
    return x


@app.function()
def sleepy(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.function()
def calls_square(x: int) -> int:
    return square.remote(x) + 1


@pytest.fixture(scope="module")
def running():  # type: ignore[no-untyped-def]
    with app.run():
        yield app


def test_remote_and_local(running: modal.App) -> None:
    assert square.remote(7) == 49
    assert add.remote(1, 2, c=3) == 6
    assert add.remote(a=5) == 5
    assert square.local(4) == 16


def test_remote_runs_in_a_worker_with_modal_context(running: modal.App) -> None:
    info = where_am_i.remote()
    assert info["is_local"] is False
    assert info["env"] == "1"
    assert info["pid"] != os.getpid()
    assert str(info["input_id"]).startswith("in-")
    assert str(info["call_id"]).startswith("fc-")
    assert modal.is_local() is True
    assert modal.current_input_id() is None
    assert modal.current_function_call_id() is None


def test_calling_without_running_app_is_an_error() -> None:
    other = modal.App("not-running")

    @other.function(serialized=True)
    def f() -> int:
        return 1

    with pytest.raises(ExecutionError, match="app is not running"):
        f.remote()


def test_async_function_and_aio(running: modal.App) -> None:
    assert async_double.remote(21) == 42

    async def main() -> list[int]:
        one = await square.remote.aio(3)
        many = await asyncio.gather(*[async_double.remote.aio(i) for i in range(5)])
        return [one, *many]

    assert asyncio.run(main()) == [9, 0, 2, 4, 6, 8]


def test_blocking_call_inside_event_loop_warns(running: modal.App) -> None:
    async def main() -> int:
        return square.remote(2)

    with pytest.warns(AsyncUsageWarning):
        assert asyncio.run(main()) == 4


def test_map_ordered_and_unordered(running: modal.App) -> None:
    assert list(square.map(range(50))) == [i * i for i in range(50)]
    assert sorted(square.map(range(50), order_outputs=False)) == [i * i for i in range(50)]
    assert list(square.map([])) == []


def test_map_zips_iterables_and_kwargs(running: modal.App) -> None:
    out = list(add.map(range(5), itertools.repeat(10), kwargs={"c": 100}))
    assert out == [110 + i for i in range(5)]
    assert list(add.starmap([(1, 2), (3, 4)], kwargs={"c": 1})) == [4, 8]


def test_map_is_lazy_over_a_generator(running: modal.App) -> None:
    pulled = 0

    def gen():  # type: ignore[no-untyped-def]
        nonlocal pulled
        for i in range(200):
            pulled += 1
            yield i

    it = square.map(gen())
    assert pulled == 0  # nothing is submitted before iteration starts
    assert next(it) == 0
    assert list(it) == [i * i for i in range(1, 200)]
    assert pulled == 200


def test_map_aio_with_async_iterable(running: modal.App) -> None:
    async def inputs():  # type: ignore[no-untyped-def]
        for i in range(20):
            yield i

    async def main() -> list[int]:
        return [x async for x in square.map.aio(inputs())]

    assert asyncio.run(main()) == [i * i for i in range(20)]


def test_map_return_exceptions(running: modal.App) -> None:
    with pytest.raises(ValueError, match="bad input 3"):
        list(fails_on.map(range(6), itertools.repeat(3)))
    raw = list(
        fails_on.map(
            range(6), itertools.repeat(3), return_exceptions=True, wrap_returned_exceptions=False
        )
    )
    assert raw[:3] == [0, 1, 2]
    assert raw[4:] == [4, 5]
    assert isinstance(raw[3], ValueError)
    with pytest.warns(modal.exception.DeprecationError):
        wrapped = list(fails_on.map(range(4), itertools.repeat(1), return_exceptions=True))
    from modal.exceptions import UserCodeException

    assert isinstance(wrapped[1], UserCodeException)
    assert isinstance(wrapped[1].exc, ValueError)


def test_for_each(running: modal.App) -> None:
    assert fails_on.for_each(range(5), itertools.repeat(-1)) is None
    with pytest.raises(ValueError):
        fails_on.for_each(range(5), itertools.repeat(2))
    assert fails_on.for_each(range(5), itertools.repeat(2), ignore_exceptions=True) is None


def test_spawn_get_gather_cancel(running: modal.App) -> None:
    fc = square.spawn(6)
    assert fc.object_id.startswith("fc-")
    assert fc.get() == 36
    assert modal.FunctionCall.from_id(fc.object_id).get() == 36
    calls = [square.spawn(i) for i in range(5)]
    assert modal.FunctionCall.gather(*calls) == [0, 1, 4, 9, 16]

    slow = sleepy.spawn(30)
    with pytest.raises(TimeoutError):
        slow.get(timeout=0)
    with pytest.raises(TimeoutError):
        slow.get(timeout=0.2)
    slow.cancel()
    with pytest.raises(BaseException):
        slow.get(timeout=30)


def test_spawn_aio(running: modal.App) -> None:
    async def main() -> int:
        fc = await square.spawn.aio(5)
        return await fc.get.aio()

    assert asyncio.run(main()) == 25


def test_remote_gen_streams(running: modal.App, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    seen = []
    for item in count_up.remote_gen(4, str(gate)):
        seen.append(item)
        if item == 0:
            gate.touch()  # the worker is blocked until we have the first item
    assert seen == [0, 1, 2, 3]

    async def main() -> list[int]:
        return [x async for x in async_count.remote_gen.aio(3)]

    assert asyncio.run(main()) == [0, 10, 20]


def test_generators_refuse_remote_and_spawn(running: modal.App) -> None:
    with pytest.raises(InvalidError, match="remote_gen"):
        count_up.remote(3)
    with pytest.raises(InvalidError, match="remote_gen"):
        count_up.spawn(3)
    with pytest.raises(InvalidError):
        list(square.remote_gen(3))


def test_nested_call_from_a_worker(running: modal.App) -> None:
    assert calls_square.remote(5) == 26


def test_no_warnings_on_plain_calls(running: modal.App) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert square.remote(1) == 1


FROM_ID_SCRIPT = """
import sys
import modal

call = modal.FunctionCall.from_id(sys.argv[1])
print("RESULT", call.get(timeout=60))
try:
    modal.FunctionCall.from_id("fc-does-not-exist")
except modal.exception.NotFoundError:
    print("MISSING OK")
"""


def test_from_id_in_another_process(running: modal.App, tmp_path: Path) -> None:
    import subprocess
    import sys

    import ray

    fc = sleepy.spawn(2.0)
    script = tmp_path / "lookup.py"
    script.write_text(FROM_ID_SCRIPT)
    env = dict(os.environ, MODAL_RAY_ADDRESS=ray.get_runtime_context().gcs_address)
    result = subprocess.run(
        [sys.executable, str(script), fc.object_id],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "RESULT 2.0" in result.stdout
    assert "MISSING OK" in result.stdout
    assert fc.get() == 2.0
