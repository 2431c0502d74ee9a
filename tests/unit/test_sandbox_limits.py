"""Sandbox memory/CPU limits through cgroups (no Ray): enforced where the node has writable
cgroups, refused (with the operator setting named) where a hard limit cannot be enforced."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from modal_ray.exception import ExecutionError
from modal_ray.sandbox_runtime import limits
from modal_ray.sandbox_runtime.supervisor import Supervisor

HOG = "b = bytearray(256 * 1024 * 1024)\nb[::4096] = b'x' * len(b[::4096])\nprint('survived')\n"


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.mark.skipif(
    shutil.which("bwrap") is None or limits._hierarchies() is None,
    reason="needs bubblewrap and a writable cgroup hierarchy on this machine",
)
def test_memory_limit_is_enforced() -> None:
    async def scenario() -> tuple[int | None, bytes, list[Path]]:
        sup = Supervisor()
        await sup.create("sb-mem", timeout=60, memory_limit=64 * 2**20)
        box = sup._sandboxes["sb-mem"]
        dirs = list(box.limits.dirs)
        xid = await sup.exec("sb-mem", ["python", "-c", HOG])
        out = b""
        while chunk := await sup.read("sb-mem", xid, 1):
            out += chunk
        code = await sup.exec_wait("sb-mem", xid)
        await sup.shutdown()
        return code, out, dirs

    code, out, dirs = _run(scenario())
    assert dirs  # the sandbox got its own cgroup(s)
    assert b"survived" not in out
    assert code != 0
    assert not any(d.exists() for d in dirs)  # removed with the sandbox


def test_without_cgroups_a_hard_limit_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(limits, "CGROUP", tmp_path / "no-cgroups")
    with pytest.raises(ExecutionError, match="MODAL_RAY_SANDBOX_LIMITS=off"):
        limits.make_limits("sb-x", memory_limit=2**20)
    monkeypatch.setenv(limits.LIMITS_ENV, "off")
    assert limits.make_limits("sb-x", memory_limit=2**20).dirs == []
    assert limits.make_limits("sb-x").join_command() == []
