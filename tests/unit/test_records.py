"""Records without Ray: a Cls rebuilt from a (pickled) record validates parameters from the
record's schema exactly as the live class does, and nothing rebuilt runs user code locally."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import pytest

import modal
from modal_ray.cls import Cls
from modal_ray.exception import ExecutionError, InvalidError
from modal_ray.function import Function
from modal_ray.records import ClassRecord, FunctionRecord
from modal_ray.run_context import RunContext

app = modal.App("unit-records")


@app.cls(cpu=0.5, retries=2)
class Model:
    name: str = modal.parameter()
    size: int = modal.parameter(default=3)
    fast: bool = modal.parameter(default=False)
    blob: bytes = modal.parameter(default=b"")
    hidden: str = modal.parameter(default="h", init=False)

    @modal.method()
    def predict(self, x: int) -> int:
        return x * self.size

    @modal.method()
    def stream(self, n: int) -> Iterator[int]:
        yield from range(n)


@app.cls()
class Batched:
    @modal.batched(max_batch_size=8, wait_ms=20)
    def run(self, xs: list[int]) -> list[int]:
        return xs


@app.function(timeout=30)
def gen(n: int) -> Iterator[int]:
    yield from range(n)


CTX = RunContext(environment="main", app_id="ap-unitrecords", app_name="unit-records", running=True)


def _rebuilt_model() -> Cls:
    record = Model._compile(CTX)
    assert isinstance(record, ClassRecord)
    return Cls._from_record(pickle.loads(pickle.dumps(record)))


def _error(make: Any) -> str:
    with pytest.raises(InvalidError) as info:
        make()
    return str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": 1},  # wrong type
        {"name": "a", "size": "3"},
        {"name": "a", "fast": 1},
        {"name": "a", "blob": "not bytes"},
        {"name": "a", "color": "red"},  # unknown
        {"name": "a", "hidden": "x"},  # init=False
        {},  # missing
        {"size": 3},
    ],
)
def test_rebuilt_cls_validates_parameters_as_the_live_class(kwargs: dict[str, Any]) -> None:
    rebuilt = _rebuilt_model()
    assert _error(lambda: rebuilt(**kwargs)) == _error(lambda: Model(**kwargs))


def test_rebuilt_cls_fills_defaults_and_refuses_positional_arguments() -> None:
    rebuilt = _rebuilt_model()
    obj = rebuilt(name="a", fast=True)
    assert obj._params == {"name": "a", "size": 3, "fast": True, "blob": b""}
    assert obj._params == Model(name="a", fast=True)._params
    assert repr(obj) == repr(Model(name="a", fast=True))
    assert _error(lambda: rebuilt("a")) == _error(lambda: Model("a"))


def test_class_record_contents() -> None:
    record = Model._compile(CTX)
    assert record.tag == "Model"
    assert (record.app.environment, record.app.app_id, record.app.app_name) == (
        "main",
        "ap-unitrecords",
        "unit-records",
    )
    methods = {m.name: m for m in record.methods}
    assert methods["predict"].is_generator is False
    assert methods["stream"].is_generator is True
    params = {p.name: p for p in record.parameters}
    assert params["name"].type is str
    assert not params["name"].has_default
    assert params["size"].type is int
    assert params["size"].default == 3
    assert params["hidden"].init is False
    assert record.spec.retries is not None
    assert record.spec.retries.max_retries == 2
    assert record.pool.service.resources.num_cpus == 0.5
    # The pool of a parameter set is named as the live class names it.
    pool = record.pool_for({"name": "a", "size": 3, "fast": False, "blob": b""})
    assert pool.container.params == {"name": "a", "size": 3, "fast": False, "blob": b""}
    assert pool.service.name.startswith("modal-main-ap-unitrecords-Model-")

    batched = {m.name: m for m in Batched._compile(CTX).methods}
    assert (batched["run"].batch_max_size, batched["run"].batch_wait_ms) == (8, 20)
    assert Batched._compile(CTX).pool.container.batched_method == "run"


def test_rebuilt_objects_run_no_local_code() -> None:
    rebuilt = _rebuilt_model()
    obj = rebuilt(name="a")
    assert obj.stream.is_generator is True
    with pytest.raises(ExecutionError, match="rebuilt from a record"):
        obj.predict.local(1)
    record = gen._compile(CTX)
    assert isinstance(record, FunctionRecord)
    assert record.is_generator is True
    assert record.invocation is not None
    assert record.pool is None
    f = Function._from_record(pickle.loads(pickle.dumps(record)))
    assert f.is_generator is True
    with pytest.raises(ExecutionError, match="rebuilt from a record"):
        f.local(2)


def test_records_need_a_running_app() -> None:
    with pytest.raises(ExecutionError, match="not running"):
        gen._record()
    with pytest.raises(ExecutionError, match="not running"):
        Model._record()
