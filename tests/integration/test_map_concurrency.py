"""`.map` fills a container's input slots and its batcher; `spawn_map` zips lazily.

Overlap is counted inside the function with `tests/support/overlap.py`: each input marks itself
running in a small state file and records the peak number of inputs running at once.
Concurrent inputs also wait (briefly) until `max_inputs` of them run, so a map that feeds a
container one input at a time shows a peak of 1, never a lucky 4.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import modal
from tests.support import overlap

STATE = Path(os.environ["MODAL_RAY_STATE"]) / "test-map-concurrency"
STATE.mkdir(parents=True, exist_ok=True)

app = modal.App("test-map-concurrency")

SLOTS = 4
GATHER_TIMEOUT_S = 10.0


def _occupy(path: str, x: int, slots: int = SLOTS) -> int:
    """Run as one input that waits for `slots` inputs to run at once (tests/support/overlap.py)."""
    overlap.occupy(path, slots, GATHER_TIMEOUT_S)
    return x * 10


def _record_batch(path: str, size: int) -> None:
    overlap.update(path, lambda s: s.setdefault("sizes", []).append(size))


@app.function(cpu=0.1, max_containers=1)
@modal.concurrent(max_inputs=SLOTS)
def occupy(x: int, path: str) -> int:
    return _occupy(path, x)


# More slots than a map used to keep in flight (max(8, 2 x CPUs) = 8 on the tests' 4-CPU Ray).
WIDE = 12


@app.function(cpu=0.1)
@modal.concurrent(max_inputs=WIDE)
def occupy_wide(x: int, path: str) -> int:
    return _occupy(path, x, WIDE)


@app.function(cpu=0.1, max_containers=1)
@modal.batched(max_batch_size=4, wait_ms=1000)
def batched_double(xs: list[int], paths: list[str]) -> list[int]:
    _record_batch(paths[0], len(xs))
    return [2 * x for x in xs]


@app.cls(cpu=0.1, max_containers=1)
@modal.concurrent(max_inputs=SLOTS)
class Slots:
    @modal.method()
    def occupy(self, x: int, path: str) -> int:
        return _occupy(path, x)


@app.cls(cpu=0.1, max_containers=1)
class BatchModel:
    @modal.batched(max_batch_size=4, wait_ms=1000)
    def predict(self, xs: list[int], paths: list[str]) -> list[int]:
        _record_batch(paths[0], len(xs))
        return [x + 1 for x in xs]


@app.function(cpu=0.1)
def tag(shared: dict[str, str], key: int) -> str:
    Path(shared["dir"], f"{key}.done").write_text(shared["label"])
    return f"{shared['label']}-{key}"


@app.function(cpu=0.1)
def noop(shared: Any, key: int) -> int:
    return key


@pytest.fixture(scope="module")
def running():  # type: ignore[no-untyped-def]
    with app.run():
        yield app


def _state_file(name: str) -> str:
    path = STATE / f"{name}-{os.urandom(4).hex()}.json"
    return str(path)


def _read(path: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def test_map_fills_the_input_slots_of_a_concurrent_function(running: modal.App) -> None:
    path = _state_file("fn-overlap")
    out = list(occupy.map(range(8), kwargs={"path": path}))
    assert out == [10 * i for i in range(8)]
    state = _read(path)
    assert state["done"] == 8
    # One container with max_inputs=4: a map runs four of its inputs at once, never more.
    assert state["peak"] == SLOTS, state


def test_map_without_max_containers_is_not_capped_below_max_inputs(running: modal.App) -> None:
    path = _state_file("fn-wide")
    out = list(occupy_wide.map(range(2 * WIDE), kwargs={"path": path}))
    assert out == [10 * i for i in range(2 * WIDE)]
    state = _read(path)
    assert state["done"] == 2 * WIDE
    assert state["peak"] >= WIDE, state


def test_map_fills_the_input_slots_of_a_concurrent_method(running: modal.App) -> None:
    path = _state_file("method-overlap")
    out = list(Slots().occupy.map(range(8), kwargs={"path": path}))
    assert out == [10 * i for i in range(8)]
    state = _read(path)
    assert state["done"] == 8
    assert state["peak"] == SLOTS, state


def test_map_feeds_full_batches_to_a_batched_function(running: modal.App) -> None:
    path = _state_file("fn-batches")
    out = list(batched_double.map(range(10), itertools.repeat(path)))
    assert out == [2 * i for i in range(10)]
    sizes = _read(path)["sizes"]
    assert sum(sizes) == 10
    assert max(sizes) == 4, sizes
    assert len(sizes) <= 4, sizes


def test_map_feeds_full_batches_to_a_batched_method(running: modal.App) -> None:
    path = _state_file("method-batches")
    out = list(BatchModel().predict.map(range(10), itertools.repeat(path)))
    assert out == [i + 1 for i in range(10)]
    sizes = _read(path)["sizes"]
    assert sum(sizes) == 10
    assert max(sizes) == 4, sizes
    assert len(sizes) <= 4, sizes


class _Endless:
    """`itertools.repeat(value)` that counts how often it was pulled and refuses to run away
    (so materialising it fails fast instead of exhausting the machine's memory)."""

    def __init__(self, value: Any, limit: int = 100_000) -> None:
        self.value = value
        self.limit = limit
        self.pulled = 0

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        self.pulled += 1
        if self.pulled > self.limit:
            raise RuntimeError(f"an endless iterable was pulled {self.pulled} times")
        return self.value


def test_spawn_map_zips_an_endless_iterable_lazily(running: modal.App) -> None:
    done_dir = STATE / f"spawn-map-{os.urandom(4).hex()}"
    done_dir.mkdir()
    shared = _Endless({"dir": str(done_dir), "label": "s"})
    keys = list(range(20))
    assert tag.spawn_map(shared, keys) is None
    deadline = time.monotonic() + 120
    while len(list(done_dir.glob("*.done"))) < len(keys) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sorted(int(p.stem) for p in done_dir.glob("*.done")) == keys
    # Zipped lazily: the endless iterable is pulled once per key (plus the one that finds the
    # keys exhausted), never materialised.
    assert shared.pulled <= len(keys) + 1, shared.pulled


def test_spawn_map_aio_takes_an_async_iterable(running: modal.App) -> None:
    done_dir = STATE / f"spawn-aio-{os.urandom(4).hex()}"
    done_dir.mkdir()
    shared = {"dir": str(done_dir), "label": "a"}

    async def keys() -> AsyncIterator[int]:
        for k in range(6):
            await asyncio.sleep(0)
            yield k

    async def main() -> None:
        await tag.spawn_map.aio(_Endless(shared), keys())
        deadline = time.monotonic() + 120
        # The async iterable is advanced on this loop, so keep it running until the map is done.
        while len(list(done_dir.glob("*.done"))) < 6 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)

    asyncio.run(main())
    assert sorted(int(p.stem) for p in done_dir.glob("*.done")) == list(range(6))


def test_experimental_spawn_map_zips_lazily_and_keeps_order(running: modal.App) -> None:
    done_dir = STATE / f"xspawn-map-{os.urandom(4).hex()}"
    done_dir.mkdir()
    shared = _Endless({"dir": str(done_dir), "label": "x"})
    call = tag.experimental_spawn_map(shared, range(12))
    assert call.get(timeout=120) == [f"x-{k}" for k in range(12)]
    assert shared.pulled <= 13, shared.pulled


def test_spawn_map_holds_a_bounded_number_of_inputs(running: modal.App) -> None:
    # A long generator of keys is pulled as the map makes progress, not copied up front. The
    # map goes on in the background; stopping the app at the end of the module cancels it.
    n = 300_000
    pulled = 0

    def keys() -> Iterator[int]:
        nonlocal pulled
        for k in range(n):
            pulled += 1
            yield k

    shared = _Endless(None, limit=n + 1)  # itertools.repeat(None); a copy of it fails fast
    assert noop.spawn_map(shared, keys()) is None
    assert pulled < n, pulled
    assert shared.pulled < n, shared.pulled
