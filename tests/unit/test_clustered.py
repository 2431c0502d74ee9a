"""`@modal.experimental.clustered` / `@modal.clustered`: what the decorator refuses at decoration,
and the surface a rank reads (`get_cluster_info`, `modal.Cluster`). No Ray here."""

from __future__ import annotations

from typing import Any

import pytest

import modal
import modal.experimental
from modal.exception import InvalidError, NotFoundError, UnimplementedError
from modal_ray import clustered as core


@pytest.mark.parametrize("size", [0, -1, core.MAX_CLUSTER_SIZE + 1, 2.0, True, "2"])
def test_bad_sizes_are_refused(size: Any) -> None:
    with pytest.raises(InvalidError, match="size"):
        modal.experimental.clustered(size=size)
    with pytest.raises(InvalidError, match="size"):
        modal.clustered(size=size)


def test_size_limit_is_documented_and_accepted() -> None:
    app = modal.App("clustered-limits")

    @app.function()
    @modal.experimental.clustered(size=core.MAX_CLUSTER_SIZE)
    def big() -> int:
        return 0

    assert big._options.cluster_size == core.MAX_CLUSTER_SIZE


def test_rdma_must_be_a_bool() -> None:
    with pytest.raises(InvalidError, match="rdma"):
        modal.experimental.clustered(size=2, rdma="yes")  # type: ignore[arg-type]


def test_rdma_true_warns_that_it_has_no_effect(monkeypatch: pytest.MonkeyPatch) -> None:
    from modal_ray import warn

    monkeypatch.setattr(warn, "_seen", set())  # the warning fires once per process
    from modal_ray import warn

    warn.reset_for_tests()  # once per process: another test of this worker may have warned
    with pytest.warns(UserWarning, match=r"rdma=True"):
        modal.experimental.clustered(size=2, rdma=True)


def test_clustered_generator_is_refused() -> None:
    def gen() -> Any:
        yield 1

    with pytest.raises(InvalidError, match="generator"):
        modal.experimental.clustered(size=2)(gen)


def test_clustered_method_of_a_class_is_refused() -> None:
    app = modal.App("clustered-method")
    # Under `@modal.method()`: refused by the decorator itself.
    with pytest.raises(InvalidError, match="method of a Modal class"):

        class A:
            @modal.experimental.clustered(size=2)
            @modal.method()
            def train(self) -> int:
                return 0

    # Above it: refused when the class is registered.
    class B:
        @modal.method()
        @modal.experimental.clustered(size=2)
        def train(self) -> int:
            return 0

    with pytest.raises(InvalidError, match=r"method B\.train"):
        app.cls()(B)


def test_clustered_class_is_not_supported_yet() -> None:
    with pytest.raises(UnimplementedError, match=r"app\.function"):

        @modal.experimental.clustered(size=2)
        class C:
            pass


def test_clustered_with_container_options_is_refused() -> None:
    app = modal.App("clustered-concurrent")
    with pytest.raises(InvalidError, match=r"@modal\.concurrent"):

        @app.function()
        @modal.experimental.clustered(size=2)
        @modal.concurrent(max_inputs=4)
        def f() -> int:
            return 0


def test_get_cluster_info_outside_a_cluster() -> None:
    with pytest.raises(InvalidError, match="inside a clustered function"):
        modal.experimental.get_cluster_info()
    with pytest.raises(InvalidError, match="inside a clustered function"):
        modal.Cluster.from_context()
    with pytest.raises(NotFoundError):
        modal.Cluster.from_id("cu-123")


def test_cluster_info_for_torchrun() -> None:
    info = core.ClusterInfo(
        rank=1,
        container_ips=["10.0.0.1", "10.0.0.2"],
        container_ipv4_ips=["10.0.0.1", "10.0.0.2"],
        cluster_id="cu-1",
        container_ids=["ta-a", "ta-b"],
        container_ports=[29500, 29501],
        node_ids=["n1", "n2"],
    )
    assert (info.master_addr, info.master_port, info.world_size) == ("10.0.0.1", 29500, 2)
    assert info.env()["MASTER_ADDR"] == "10.0.0.1"
    assert info.env()["RANK"] == "1"
    cluster = core.Cluster(info)
    assert cluster.container_rank() == 1
    assert cluster.container_rank("ta-a") == 0
    assert cluster.container_ips() == ["10.0.0.1", "10.0.0.2"]
    assert cluster.container_ids() == ["ta-a", "ta-b"]
    assert cluster.object_id == "cu-1"
    assert type(info).__module__ == "modal.experimental"
    assert modal.Cluster.__module__ == "modal.cluster"


def test_operator_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(core.SHARE_NODES_ENV, raising=False)
    monkeypatch.delenv(core.PLACEMENT_TIMEOUT_ENV, raising=False)
    assert core.share_nodes_allowed() is False
    assert core.placement_timeout() == 300.0
    monkeypatch.setenv(core.SHARE_NODES_ENV, "1")
    monkeypatch.setenv(core.PLACEMENT_TIMEOUT_ENV, "12.5")
    assert core.share_nodes_allowed() is True
    assert core.placement_timeout() == 12.5
    monkeypatch.setenv(core.PLACEMENT_TIMEOUT_ENV, "0")
    with pytest.raises(InvalidError, match=core.PLACEMENT_TIMEOUT_ENV):
        core.placement_timeout()
