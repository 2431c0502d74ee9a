"""Errors, timeouts, retries with backoff, and worker crashes, on a real local Ray."""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from pathlib import Path

import pytest

import modal
from modal.exception import ExecutionError, FunctionTimeoutError, SerializationError

app = modal.App("test-errors")


class CustomError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Unpicklable(Exception):
    def __reduce__(self):  # type: ignore[no-untyped-def]
        raise TypeError("refusing to pickle")


@app.function()
def raise_custom(code: int) -> None:
    raise CustomError(code)


@app.function()
def raise_unpicklable() -> None:
    raise Unpicklable("nope")


@app.function()
def echo(x: object) -> object:
    return x


@app.function()
def return_lock() -> object:
    return threading.Lock()


@app.function(timeout=1)
def too_slow() -> None:
    time.sleep(30)


def _attempt(marker_dir: str) -> int:
    """Record one attempt (with its time) in a folder shared with the test; return its number."""
    folder = Path(marker_dir)
    n = len(list(folder.glob("attempt-*"))) + 1
    (folder / f"attempt-{n}").write_text(repr(time.time()))
    return n


@app.function(retries=modal.Retries(max_retries=3, backoff_coefficient=2.0, initial_delay=0.5))
def flaky(marker_dir: str, succeed_on: int) -> int:
    n = _attempt(marker_dir)
    if n < succeed_on:
        raise RuntimeError(f"attempt {n} fails")
    return n


@app.function(retries=1, timeout=1)
def slow_then_fast(marker_dir: str) -> str:
    if _attempt(marker_dir) == 1:
        time.sleep(30)
    return "done"


@app.function(retries=2)
def always_fails(marker_dir: str) -> None:
    _attempt(marker_dir)
    raise KeyError("never")


@app.function()
def die_once(x: int, marker_dir: str, victim: int) -> int:
    if x == victim:
        marker = Path(marker_dir) / "killed"
        if not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
    return x * 2


@pytest.fixture(scope="module")
def running():  # type: ignore[no-untyped-def]
    with app.run():
        yield app


def _times(folder: Path) -> list[float]:
    files = sorted(folder.glob("attempt-*"), key=lambda p: int(p.name.split("-")[1]))
    return [float(p.read_text()) for p in files]


def test_user_exception_keeps_type_and_remote_traceback(running: modal.App) -> None:
    with pytest.raises(CustomError) as info:
        raise_custom.remote(42)
    assert info.value.code == 42
    cause = info.value.__cause__
    assert cause is not None
    assert "raise_custom" in str(cause)
    assert "Traceback" in str(cause)


def test_unpicklable_exception_becomes_execution_error(running: modal.App) -> None:
    with pytest.raises(ExecutionError, match="Unpicklable"):
        raise_unpicklable.remote()


def test_unpicklable_argument_names_the_argument(running: modal.App) -> None:
    with pytest.raises(SerializationError, match="Argument 0"):
        echo.remote(threading.Lock())
    with pytest.raises(SerializationError, match="'x'"):
        echo.remote(x=threading.Lock())


def test_unpicklable_return_value(running: modal.App) -> None:
    with pytest.raises((SerializationError, ExecutionError), match=r"(?i)serializ|pickle"):
        return_lock.remote()


def test_timeout_raises_function_timeout_error(running: modal.App) -> None:
    with pytest.raises(FunctionTimeoutError):
        too_slow.remote()


def test_timeout_is_retried_per_policy(running: modal.App, tmp_path: Path) -> None:
    assert slow_then_fast.remote(str(tmp_path)) == "done"
    assert len(_times(tmp_path)) == 2


def test_retries_back_off(running: modal.App, tmp_path: Path) -> None:
    assert flaky.remote(str(tmp_path), 4) == 4
    times = _times(tmp_path)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Delays 0.5, 1.0, 2.0 s (coefficient 2): each retry waits at least its delay.
    assert len(gaps) == 3
    for gap, delay in zip(gaps, [0.5, 1.0, 2.0], strict=True):
        assert gap >= delay * 0.95, (gaps, delay)


def test_retries_exhausted_raise_last_error(running: modal.App, tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        always_fails.remote(str(tmp_path))
    assert len(_times(tmp_path)) == 3


def test_retries_apply_per_input_in_map(running: modal.App, tmp_path: Path) -> None:
    dirs = [tmp_path / str(i) for i in range(3)]
    for d in dirs:
        d.mkdir()
    assert list(flaky.map([str(d) for d in dirs], [1, 2, 3])) == [1, 2, 3]
    assert [len(_times(d)) for d in dirs] == [1, 2, 3]


def test_worker_killed_mid_map_yields_every_result_once(running: modal.App, tmp_path: Path) -> None:
    results = list(die_once.map(range(40), [str(tmp_path)] * 40, [17] * 40))
    assert (tmp_path / "killed").exists()
    assert results == [2 * i for i in range(40)]


def test_worker_killed_during_remote_is_retried(running: modal.App, tmp_path: Path) -> None:
    assert die_once.remote(5, str(tmp_path), 5) == 10
    assert (tmp_path / "killed").exists()
