"""Resources, retry policies, exceptions and options: pure logic, no Ray."""

from __future__ import annotations

import pickle

import pytest

import modal
from modal.exception import InvalidError
from modal_ray.errors import RemoteFailure
from modal_ray.function_options import FunctionOptions, to_retry_policy
from modal_ray.resources import ACCELERATOR_LABEL, parse_gpu, parse_resources
from modal_ray.run_context import RunContext


@pytest.mark.parametrize(
    ("spec", "accel", "count"),
    [
        ("T4", "T4", 1),
        ("a10g", "A10G", 1),
        ("A100-80GB:2", "A100", 2),
        ("h100:8", "H100", 8),
        ("H100!", "H100", 1),
        ("any", None, 1),
        ("ANY:4", None, 4),
        ("l40s", "L40S", 1),
    ],
)
def test_gpu_strings(spec: str, accel: str | None, count: int) -> None:
    got_accel, got_count, _ = parse_gpu(spec)
    assert (got_accel, got_count) == (accel, count)


@pytest.mark.parametrize("spec", ["", "X100", "H100:0", "H100:9", "A10G:5", "T4:two", "H100:-1"])
def test_invalid_gpu_strings(spec: str) -> None:
    with pytest.raises(InvalidError):
        parse_gpu(spec)


def test_gpu_fallback_list_maps_to_label_selectors() -> None:
    res = parse_resources(gpu=["H100", "a100", "any"])
    assert res.num_gpus == 1
    assert res.label_selector == {ACCELERATOR_LABEL: "H100"}
    assert res.fallback_label_selectors == ({ACCELERATOR_LABEL: "A100"}, {})


def test_cpu_and_memory() -> None:
    from modal_ray import warn

    warn.reset_for_tests()  # these warnings are once per process: another test may have had them
    res = parse_resources(cpu=2.5, memory=1024)
    assert res.num_cpus == 2.5
    assert res.memory_bytes == 1024 * 1024 * 1024
    assert parse_resources().num_cpus == 1.0
    with pytest.warns(UserWarning, match="cannot cap CPU"):
        assert parse_resources(cpu=(1, 4)).num_cpus == 1
    with pytest.warns(UserWarning, match="memory limits"):
        assert parse_resources(memory=(512, 1024)).memory_bytes == 512 * 2**20


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cpu": 0},
        {"cpu": -1},
        {"cpu": "two"},
        {"cpu": (4, 2)},
        {"cpu": True},
        {"memory": 0},
        {"memory": "1GB"},
        {"memory": (1024, 512)},
        {"memory": 10**9},
        {"gpu": []},
        {"gpu": 3},
    ],
)
def test_invalid_resources_raise_at_decoration(kwargs: dict[str, object]) -> None:
    app = modal.App()
    with pytest.raises(InvalidError):

        @app.function(**kwargs)  # type: ignore[arg-type]
        def f() -> None: ...


def test_retries() -> None:
    fixed = to_retry_policy(3)
    assert fixed is not None
    assert [fixed.delay_for(n) for n in (1, 2, 3)] == [1.0, 1.0, 1.0]
    policy = to_retry_policy(
        modal.Retries(max_retries=5, backoff_coefficient=3.0, initial_delay=2.0, max_delay=30)
    )
    assert policy is not None
    assert [policy.delay_for(n) for n in (1, 2, 3, 4)] == [2.0, 6.0, 18.0, 30.0]
    for bad in (
        {"max_retries": 11},
        {"max_retries": -1},
        {"max_retries": 1, "backoff_coefficient": 0.5},
        {"max_retries": 1, "initial_delay": 61},
        {"max_retries": 1, "max_delay": 0.5},
    ):
        with pytest.raises(InvalidError):
            modal.Retries(**bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidError):
        to_retry_policy(True)


def test_timeouts_validated() -> None:
    app = modal.App()
    for bad in (0, -5, 24 * 3600 + 1, "10"):
        with pytest.raises(InvalidError):

            @app.function(timeout=bad)  # type: ignore[arg-type]
            def f() -> None: ...


def test_cloud_only_parameters_warn_once() -> None:
    from modal_ray import warn

    warn.reset_for_tests()
    app = modal.App()
    with pytest.warns(UserWarning, match="region="):

        @app.function(region="us-east")
        def f() -> None: ...

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")

        @app.function(region="eu")
        def g() -> None: ...


def test_deprecated_names_map_with_warning() -> None:
    from modal_ray import warn

    warn.reset_for_tests()
    app = modal.App()
    with pytest.warns(modal.exception.DeprecationError, match="concurrency_limit"):

        @app.function(concurrency_limit=3)
        def f() -> None: ...

    assert f._options.max_containers == 3


def test_decorator_misuse_is_explained() -> None:
    app = modal.App()
    with pytest.raises(InvalidError, match="parentheses"):
        app.function(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(InvalidError, match=r"app\.cls"):
        app.function()(type("C", (), {}))


def test_exception_hierarchy_matches_modal() -> None:
    exc = modal.exception
    assert issubclass(exc.FunctionTimeoutError, exc.TimeoutError)
    assert issubclass(exc.TimeoutError, exc.Error)
    assert not issubclass(exc.TimeoutError, TimeoutError)
    assert issubclass(exc.ConflictError, exc.InvalidError)
    assert issubclass(exc.ImageBuildError, exc.RemoteError)
    assert issubclass(exc.InputCancellation, BaseException)
    assert not issubclass(exc.InputCancellation, Exception)
    assert issubclass(exc.DeprecationError, UserWarning)
    assert modal.Error is exc.Error
    assert exc.NotFoundError("x").message == "x"


def test_remote_failure_round_trip() -> None:
    try:
        raise KeyError("k")
    except KeyError as e:
        failure = RemoteFailure.capture(e, "Traceback: remote")
    revived = pickle.loads(pickle.dumps(failure)).to_exception("f")
    assert isinstance(revived, KeyError)
    assert "remote" in str(revived.__cause__)
    timeout = RemoteFailure("timeout", None, "f timed out", "").to_exception("f")
    assert isinstance(timeout, modal.exception.FunctionTimeoutError)


def test_function_options_override() -> None:
    opts = FunctionOptions.from_decorator(lambda: None, {"cpu": 2, "timeout": 30})
    new = opts.override(timeout=60, gpu="T4")
    assert new.timeout == 60
    assert new.resources.num_gpus == 1
    assert new.resources.num_cpus == 2
    assert opts.timeout == 30


def _container_cpus(kwargs: dict[str, object]) -> float:
    opts = FunctionOptions.from_decorator(lambda: None, kwargs)
    service, _ = opts.build_container(
        name="modal-main-ap-x-C-0",
        tag="C",
        target=None,
        is_class=True,
        params={},
        ctx=RunContext(environment="main", app_id=None),
    )
    return service.resources.num_cpus


def test_containers_request_modals_default_cpu_share() -> None:
    from modal_ray.resources import DEFAULT_CONTAINER_CPU

    assert DEFAULT_CONTAINER_CPU == 0.125
    assert _container_cpus({}) == 0.125
    assert _container_cpus({"gpu": "T4"}) == 0.125
    # An explicit request is kept exactly, for containers and tasks alike.
    assert _container_cpus({"cpu": 1.5}) == 1.5
    assert FunctionOptions.from_decorator(lambda: None, {"cpu": 1.5}).resources.num_cpus == 1.5
    with_options = FunctionOptions.from_decorator(lambda: None, {}).override(cpu=2)
    assert with_options.resources.num_cpus == 2
    # A task-backed function keeps Ray's one CPU per task.
    assert FunctionOptions.from_decorator(lambda: None, {}).resources.num_cpus == 1.0
