"""Records (issue 9 item 2): a running app's Function and Cls are described by plain records that
another process rebuilds and calls without importing the user's module; and a class method call
prepares only what it uses (the class's pool, built from one record per class and run).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest

import modal
from modal_ray.cls import Cls
from modal_ray.function import Function
from modal_ray.function_options import FunctionOptions
from modal_ray.image.builder import Image

app = modal.App("test-records")


@app.function(cpu=0.1)
def double(x: int) -> int:
    return 2 * x


@app.function(cpu=0.1, min_containers=0)
@modal.concurrent(max_inputs=4)
def triple(x: int) -> int:
    return 3 * x


@app.cls(cpu=0.1)
class Greeter:
    greeting: str = modal.parameter()
    times: int = modal.parameter(default=1)

    @modal.method()
    def greet(self, name: str) -> str:
        return " ".join([f"{self.greeting}, {name}"] * self.times)

    @modal.method()
    def shout(self, name: str) -> str:
        return f"{self.greeting}, {name}".upper()

    @modal.method()
    def setting(self, key: str) -> str | None:
        return os.environ.get(key)


REBUILD_SCRIPT = """
import asyncio
import pickle
import sys

import ray

from modal_ray.cls import Cls
from modal_ray.exception import ExecutionError, InvalidError
from modal_ray.function import Function

module = sys.argv[2]
with open(sys.argv[1], "rb") as f:
    records = pickle.load(f)
assert module not in sys.modules, "unpickling a record imported the user's module"

double = Function._from_record(records["double"])
assert double.remote(21) == 42
assert asyncio.run(double.remote.aio(5)) == 10
assert list(double.map([1, 2, 3])) == [2, 4, 6]
assert double.spawn(7).get() == 14
try:
    double.local(1)
except ExecutionError as exc:
    print("LOCAL", exc)
else:
    raise AssertionError("`.local()` ran on a rebuilt Function")

triple = Function._from_record(records["triple"])
assert triple.remote(3) == 9
assert sorted(triple.map([1, 2], order_outputs=False)) == [3, 6]

Greeter = Cls._from_record(records["Greeter"])
assert Greeter(greeting="hi", times=2).greet.remote("bob") == "hi, bob hi, bob"
assert Greeter(greeting="yo").shout.remote("al") == "YO, AL"
try:
    Greeter(greeting=3)
except InvalidError as exc:
    print("INVALID", exc)
else:
    raise AssertionError("a wrong parameter type was accepted")

assert module not in sys.modules, "calling the rebuilt objects imported the user's module"
print("NAMESPACE", ray.get_runtime_context().namespace)
print("REBUILT OK")
"""


def test_records_rebuild_in_a_process_without_the_users_module(tmp_path: Path) -> None:
    import ray

    with app.run():
        assert double.remote(1) == 2
        assert Greeter(greeting="hi", times=2).greet.remote("ann") == "hi, ann hi, ann"
        records = {
            "double": double._record(),
            "triple": triple._record(),
            "Greeter": Greeter._record(),
        }
        assert records["double"].is_generator is False
        assert records["double"].app.app_id == app.app_id
        assert records["Greeter"].app.app_name == "test-records"
        assert {m.name for m in records["Greeter"].methods} == {"greet", "shout", "setting"}
        path = tmp_path / "records.pkl"
        path.write_bytes(pickle.dumps(records))
        script = tmp_path / "rebuild.py"
        script.write_text(REBUILD_SCRIPT)
        env = dict(os.environ, MODAL_RAY_ADDRESS=ray.get_runtime_context().gcs_address)
        result = subprocess.run(
            [sys.executable, str(script), str(path), __name__],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "REBUILT OK" in result.stdout
        assert f"NAMESPACE {ray.get_runtime_context().namespace}" in result.stdout
        assert "rebuilt from a record" in result.stdout  # `.local()`'s message
        assert "Greeter.greeting expects str, got int" in result.stdout

        # The subprocess attached to this run's pools and exited. Its driver is dead, this one
        # is not: the janitor must keep the run's pools (it used to remember only the last
        # driver that attached, and deleted the live run's pools once that one exited).
        from modal_ray import naming
        from modal_ray.backends.ray.serve import JANITOR_NAME, JANITOR_NAMESPACE

        janitor = ray.get_actor(JANITOR_NAME, namespace=JANITOR_NAMESPACE)
        prefix = naming.run_prefix(app.run_context().environment, app.app_id)
        watchers = ray.get(janitor.watching.remote(prefix))
        mine = ray.get_runtime_context().get_job_id()
        assert mine in watchers, watchers
        assert len(watchers) == 2, watchers
        (theirs,) = set(watchers) - {mine}
        deadline = time.monotonic() + 60
        while not any(j["JobID"] == theirs and j.get("IsDead") for j in ray._private.state.jobs()):
            assert time.monotonic() < deadline, "the subprocess's job never ended"
            time.sleep(0.2)
        assert prefix not in ray.get(janitor.sweep.remote())
        assert Greeter(greeting="hi", times=2).greet.remote("bo") == "hi, bo hi, bo"


def test_method_calls_prepare_the_class_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """N calls over M methods of K parameter sets pack the image once (per class and run) and run
    no function preparation; today each method of each instance ran `FunctionOptions.build`
    (packing the image) and threw its spec and invocation away."""
    packs: list[str] = []
    builds: list[str] = []
    real_setup, real_build = Image._worker_setup, FunctionOptions.build

    def counted_setup(self: Image) -> object:
        packs.append("pack")
        return real_setup(self)

    def counted_build(self: FunctionOptions, tag: str, *args: object, **kw: object) -> object:
        builds.append(tag)
        return real_build(self, tag, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Image, "_worker_setup", counted_setup)
    monkeypatch.setattr(FunctionOptions, "build", counted_build)
    with app.run():
        for greeting in ("a", "b"):
            obj = Greeter(greeting=greeting)
            for _ in range(3):
                assert obj.greet.remote("x") == f"{greeting}, x"
                assert obj.shout.remote("y") == f"{greeting}, y".upper()
        assert builds == []
        assert len(packs) == 1
        # A container function packs once too (it used to pack for a spec it did not use).
        assert [triple.remote(i) for i in range(3)] == [0, 3, 6]
        assert len(packs) == 2
    # The next run prepares again (its pools have other names).
    with app.run():
        assert Greeter(greeting="c").greet.remote("z") == "c, z"
        assert len(packs) == 3


def test_rebuilt_objects_in_this_process() -> None:
    """Rebuilt objects are independent of the live ones: calls go to the same pools."""
    with app.run():
        rebuilt = Cls._from_record(Greeter._record())
        assert rebuilt(greeting="r").greet.remote("s") == "r, s"
        f = Function._from_record(double._record())
        assert f.remote(4) == 8
        with pytest.raises(modal.exception.ExecutionError, match="rebuilt from a record"):
            rebuilt(greeting="r").greet.local("s")
        # Variants of a rebuilt class (a class looked up by name has no code to recompile):
        # derived from its record, with pools of their own.
        blue = rebuilt.with_options(env={"SHADE": "blue"}, timeout=30, cpu=0.2)
        blue = blue.with_concurrency(max_inputs=3)
        assert blue(greeting="r").setting.remote("SHADE") == "blue"
        assert rebuilt(greeting="r").setting.remote("SHADE") is None
        base, derived = rebuilt._compiled, blue._compiled
        assert base is not None
        assert derived is not None
        assert derived.pool.container.max_inputs == 3
        assert derived.spec.timeout == 30
        assert derived.pool.service.resources.num_cpus == 0.2
        assert base.pool.service.resources.num_cpus == 0.1
        params = {"greeting": "r", "times": 1}
        assert derived.pool_for(params).service.name != base.pool_for(params).service.name
        with pytest.raises(modal.exception.InvalidError, match=r"no @modal\.batched method"):
            rebuilt.with_batching(max_batch_size=4, wait_ms=10)
