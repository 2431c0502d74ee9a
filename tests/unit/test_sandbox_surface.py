"""The sandbox surface without Ray: constructors, probes, snapshots, argument checks."""

from __future__ import annotations

import pytest

import modal
from modal.exception import InvalidError, UnimplementedError


def test_constructors_point_to_the_factories() -> None:
    with pytest.raises(InvalidError, match=r"Sandbox\.create"):
        modal.Sandbox()
    with pytest.raises(InvalidError):
        modal.SandboxSnapshot()


def test_snapshots_are_a_platform_feature() -> None:
    with pytest.raises(UnimplementedError, match="memory snapshots"):
        modal.SandboxSnapshot.from_id("sn-123")


def test_probes() -> None:
    assert modal.Probe.with_tcp(8080).tcp_port == 8080
    assert modal.Probe.with_exec("test", "-f", "/ready", interval_ms=50).exec_argv == (
        "test",
        "-f",
        "/ready",
    )
    with pytest.raises(InvalidError):
        modal.Probe()
    with pytest.raises(InvalidError):
        modal.Probe(tcp_port=1, exec_argv=["x"])


def test_public_homes() -> None:
    from modal.container_process import ContainerProcess
    from modal.file_io import FileIO
    from modal.io_streams import StreamReader, StreamWriter
    from modal.sandbox_fs import SandboxFilesystem

    assert modal.Sandbox.__module__ == "modal.sandbox"
    for cls, home in [
        (ContainerProcess, "modal.container_process"),
        (StreamReader, "modal.io_streams"),
        (StreamWriter, "modal.io_streams"),
        (FileIO, "modal.file_io"),
        (SandboxFilesystem, "modal.sandbox_fs"),
        (modal.Tunnel, "modal._tunnel"),
        (modal.SandboxSnapshot, "modal.snapshot"),
    ]:
        assert cls.__module__ == home
