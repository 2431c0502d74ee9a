"""Classes on Ray Serve: parameters, lifecycle hooks, concurrency, batching, one pool per
parameter set."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest

import modal
from modal.exception import InvalidError
from tests.support import overlap

STATE = Path(os.environ["MODAL_RAY_STATE"]) / "test-classes"
STATE.mkdir(parents=True, exist_ok=True)

app = modal.App("test-classes")


@app.cls(cpu=0.1)
class Counter:
    name: str = modal.parameter(default="a")
    start: int = modal.parameter(default=0)

    @modal.enter()
    def setup(self) -> None:
        self.count = self.start
        self.pid = os.getpid()
        (STATE / f"enter-{self.name}-{self.pid}").write_text("1")

    @modal.method()
    def bump(self) -> tuple[str, int, int]:
        self.count += 1
        return self.name, self.count, self.pid

    @modal.method()
    async def abump(self, by: int) -> int:
        await asyncio.sleep(0)
        self.count += by
        return self.count

    @modal.method()
    def squares(self, n: int):  # type: ignore[no-untyped-def]
        for i in range(n):
            yield i * i

    @modal.method()
    def ids(self) -> tuple[str | None, str | None, bool]:
        return modal.current_input_id(), modal.current_function_call_id(), modal.is_local()

    @modal.exit()
    def teardown(self) -> None:
        (STATE / f"exit-{self.name}-{self.pid}").write_text(str(self.count))


@app.cls(cpu=0.1, max_containers=1)
@modal.concurrent(max_inputs=3)
class Overlap:
    @modal.method()
    def window(self, path: str) -> None:
        overlap.occupy(path, 3)

    @modal.method()
    async def awindow(self, path: str) -> None:
        await overlap.occupy_async(path, 3)


@app.cls(cpu=0.1, max_containers=1)
class Batcher:
    @modal.batched(max_batch_size=4, wait_ms=300)
    def double(self, xs: list[int]) -> list[tuple[int, int]]:
        return [(x * 2, len(xs)) for x in xs]


@app.cls(cpu=0.1)
class BrokenEnter:
    @modal.enter()
    def setup(self) -> None:
        raise RuntimeError("model weights not found")

    @modal.method()
    def f(self) -> int:
        return 1


@app.cls(cpu=0.1, max_containers=1)
class WrongBatch:
    @modal.batched(max_batch_size=4, wait_ms=100)
    def bad(self, xs: list[int]) -> list[int]:
        return xs[:1]


@app.function(cpu=0.1, max_containers=1)
@modal.concurrent(max_inputs=4)
def concurrent_fn(path: str) -> int:
    overlap.occupy(path, 4)
    return os.getpid()


@app.function(cpu=0.1, max_containers=1)
@modal.batched(max_batch_size=5, wait_ms=300)
def batched_fn(xs: list[int], ys: list[int]) -> list[int]:
    return [x + y for x, y in zip(xs, ys, strict=True)]


@pytest.fixture(scope="module")
def running():  # type: ignore[no-untyped-def]
    with app.run():
        yield app


def _state_file(label: str) -> str:
    return str(STATE / f"overlap-{label}-{uuid.uuid4().hex[:8]}.json")


def test_methods_parameters_and_state(running: modal.App) -> None:
    c = Counter(name="p1", start=10)
    assert c.bump.remote()[:2] == ("p1", 11)
    assert c.bump.remote()[:2] == ("p1", 12)
    assert c.abump.remote(5) == 17
    assert list(c.squares.remote_gen(4)) == [0, 1, 4, 9]
    input_id, call_id, local = c.ids.remote()
    assert str(input_id).startswith("in-")
    assert str(call_id).startswith("fc-")
    assert local is False


def test_parameter_sets_never_share_state(running: modal.App) -> None:
    a, b = Counter(name="pa"), Counter(name="pb", start=100)
    results = [a.bump.remote(), b.bump.remote(), a.bump.remote(), b.bump.remote()]
    assert [r[:2] for r in results] == [("pa", 1), ("pb", 101), ("pa", 2), ("pb", 102)]
    assert results[0][2] != results[1][2]  # different containers


def test_enter_runs_once_per_replica(running: modal.App) -> None:
    c = Counter(name="once")
    pids = {c.bump.remote()[2] for _ in range(20)}
    results = list(c.bump.map(range(0)))  # an empty map is fine too
    assert results == []
    entered = sorted(p.name for p in STATE.glob("enter-once-*"))
    assert entered == sorted(f"enter-once-{pid}" for pid in pids)
    # One container served all twenty calls in order: the counter saw every one.
    assert c.bump.remote()[1] == 21


def test_map_spawn_and_aio_on_methods(running: modal.App) -> None:
    c = Counter(name="maps")
    # One container runs the three inputs one at a time; like Modal, a map does not promise
    # that inputs start in input order, only that results come back in it.
    assert sorted(r[1] for r in c.bump.starmap([()] * 3)) == [1, 2, 3]
    fc = c.abump.spawn(10)
    assert fc.get(timeout=60) == 13

    async def main() -> int:
        return await c.abump.remote.aio(1)

    assert asyncio.run(main()) == 14


def test_concurrent_inputs_overlap_up_to_max_inputs(running: modal.App) -> None:
    # Counted inside the container (tests/support/overlap.py): 3 at once, never 4.
    o = Overlap()
    path = _state_file("sync")
    for fc in [o.window.spawn(path) for _ in range(9)]:
        fc.get(timeout=120)
    assert overlap.read(path) == {"running": 0, "peak": 3, "done": 9}
    path = _state_file("async")
    for fc in [o.awindow.spawn(path) for _ in range(7)]:
        fc.get(timeout=120)
    assert overlap.read(path) == {"running": 0, "peak": 3, "done": 7}


def test_concurrent_plain_function_is_served(running: modal.App) -> None:
    path = _state_file("fn")
    pids = [fc.get(timeout=120) for fc in [concurrent_fn.spawn(path) for _ in range(8)]]
    assert overlap.read(path) == {"running": 0, "peak": 4, "done": 8}
    assert len(set(pids)) == 1


def test_batches_group_concurrent_calls(running: modal.App) -> None:
    b = Batcher()
    calls = [b.double.spawn(i) for i in range(10)]
    results = [fc.get(timeout=120) for fc in calls]
    assert [r[0] for r in results] == [2 * i for i in range(10)]
    sizes = [r[1] for r in results]
    assert max(sizes) <= 4
    assert max(sizes) > 1
    assert batched_fn.remote(1, 2) == 3
    assert list(batched_fn.map(range(7), range(7))) == [2 * i for i in range(7)]


def test_wrong_batch_length_reaches_every_caller(running: modal.App) -> None:
    w = WrongBatch()
    calls = [w.bad.spawn(i) for i in range(3)]
    for fc in calls:
        with pytest.raises(ValueError, match="one output per input"):
            fc.get(timeout=60)


def test_exception_in_enter_fails_calls_clearly(running: modal.App) -> None:
    with pytest.raises(RuntimeError, match="model weights not found"):
        BrokenEnter().f.remote()


def test_local_runs_enter_locally() -> None:
    c = Counter(name="local", start=3)
    assert c.bump.local()[:2] == ("local", 4)
    assert c.count == 4  # plain attributes come from the local instance


def test_class_misuse_is_explained() -> None:
    with pytest.raises(InvalidError, match="keyword"):
        Counter("x")
    with pytest.raises(InvalidError, match="expects str"):
        Counter(name=3)
    with pytest.raises(InvalidError, match="no parameter"):
        Counter(nope=1)
    other = modal.App("misuse")
    with pytest.raises(InvalidError, match="__init__"):

        @other.cls()
        class WithInit:
            def __init__(self) -> None:
                self.x = 1

    with pytest.raises(InvalidError, match="batched"):

        @other.cls()
        class TwoKinds:
            @modal.batched(max_batch_size=2, wait_ms=10)
            def b(self, xs: list[int]) -> list[int]:
                return xs

            @modal.method()
            def m(self) -> None: ...


def test_with_options_gets_its_own_pool(running: modal.App) -> None:
    base = Counter(name="variant")
    other = Counter.with_options(timeout=100)(name="variant")
    assert base.bump.remote()[1] == 1
    assert other.bump.remote()[1] == 1  # not the same container state
    assert base.bump.remote()[1] == 2


def test_exit_runs_when_the_app_stops() -> None:
    stop_app = modal.App("test-classes-exit")

    @stop_app.cls(cpu=0.1, serialized=True)
    class Lifecycle:
        tag: str = modal.parameter()

        @modal.enter()
        def start(self) -> None:
            self.pid = os.getpid()

        @modal.method()
        def pid_of(self) -> int:
            return self.pid

        @modal.exit()
        def stop(self) -> None:
            (STATE / f"lifecycle-exit-{self.tag}-{self.pid}").write_text("bye")

    with stop_app.run():
        pid = Lifecycle(tag="t1").pid_of.remote()
        assert not (STATE / f"lifecycle-exit-t1-{pid}").exists()
    assert (STATE / f"lifecycle-exit-t1-{pid}").exists()
