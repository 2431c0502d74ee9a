"""The backend seam is typed and complete, and the replica runtime lives outside the backend.

- mypy checks code written against the protocols of `modal_ray.backends` (a `Pending` is
  awaitable, a container pool has a type) and checks that the Ray implementation satisfies them;
- nothing outside the pending classes themselves reaches for an engine future;
- `modal_ray.serve_adapters.replica.Replica` runs a container with no Ray loaded, and the Serve
  deployment class of the Ray backend only delegates to it.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MYPY = Path(sys.executable).with_name("mypy")

# Code written against the seam, as the core writes it. mypy must accept it.
SEAM_USER = """
from __future__ import annotations

from typing import Any

from modal_ray.backends import Backend, Pending, PendingStream, Prepared, PreparedService
from modal_ray.backends.ray import RayBackend
from modal_ray.backends.ray.serve import ServeMethod, ServePending, Service, ServeStream
from modal_ray.backends.ray.tasks import RayPending, RayPendingStream, RayPrepared
from modal_ray.runtime.container import ContainerSpec
from modal_ray.specs import ServiceSpec

backend: Backend = RayBackend()


async def value_of(pending: Pending) -> Any:
    return await pending


async def first_done(b: Backend, pendings: list[RayPending]) -> list[RayPending]:
    return await b.wait_any(pendings, timeout=1.0)


def pool(b: Backend, spec: ServiceSpec, container: ContainerSpec) -> Prepared:
    service: PreparedService = b.prepare_service(spec, container)
    service.update(min_replicas=1)
    return service.method("__call__")


def pool_of(prepared: Prepared) -> PreparedService | None:
    return prepared.service


def implementations(
    a: RayPending, b: ServePending, c: RayPendingStream, d: ServeStream,
    e: RayPrepared, f: ServeMethod, g: Service,
) -> tuple[Pending, Pending, PendingStream, PendingStream, Prepared, Prepared, PreparedService]:
    return a, b, c, d, e, f, g
"""


def _overlay(tmp: Path) -> Path:
    """The installed layout (`modal_ray.backends` = backends/, ...) as a tree mypy can read:
    the editable install maps the folders with an import hook, which mypy does not follow."""
    site = tmp / "overlay" / "modal_ray"
    site.mkdir(parents=True)
    for folder in ("backends", "serve_adapters", "volumes", "cli"):
        os.symlink(ROOT / folder, site / folder)
    return site.parent


def _mypy(tmp: Path, source: str) -> subprocess.CompletedProcess[str]:
    probe = tmp / "seam_user.py"
    probe.write_text(textwrap.dedent(source))
    config = tmp / "mypy.ini"
    config.write_text(
        "[mypy]\nstrict = True\nignore_missing_imports = True\nwarn_unused_ignores = False\n"
        "follow_imports = silent\n"
    )
    env = {**os.environ, "MYPYPATH": f"{ROOT / 'compat'}{os.pathsep}{_overlay(tmp)}"}
    return subprocess.run(
        [str(MYPY), "--config-file", str(config), "--cache-dir", str(tmp / "cache"), str(probe)],
        capture_output=True,
        text=True,
        cwd=tmp,
        env=env,
        timeout=600,
    )


def test_mypy_checks_code_written_against_the_seam(tmp_path: Path) -> None:
    result = _mypy(tmp_path, SEAM_USER)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_sees_the_seam_and_flags_a_mismatch(tmp_path: Path) -> None:
    """The check above is not vacuous: the seam resolves to real types, so a wrong use fails."""
    result = _mypy(
        tmp_path,
        "from modal_ray.backends import Pending\n"
        "def f(p: Pending) -> None:\n"
        "    p.result(timeout='soon')\n",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'incompatible type "str"' in result.stdout, result.stdout


def _future_calls(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "future"
        ):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_engine_future_outside_the_pending_classes() -> None:
    """A pending is awaited (`await p`, `result_async`) or waited on with `Backend.wait_any`;
    only the pending classes (tasks.py, serve.py) turn an engine reference into a future."""
    allowed = {ROOT / "backends/ray/tasks.py", ROOT / "backends/ray/serve.py"}
    offenders = []
    for folder in ("compat", "cli", "backends", "serve_adapters", "volumes"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path not in allowed:
                offenders += _future_calls(path)
    assert not offenders, offenders


REPLICA_RUN = """
import asyncio, sys

from modal_ray.runtime.container import ContainerSpec
from modal_ray.serve_adapters.replica import Replica


class Counter:
    def __call__(self, x):
        return x + 1

    def count(self, n):
        yield from range(n)


async def main():
    replica = Replica(ContainerSpec(
        tag="Counter", target=Counter, is_class=True, params={}, environment="main"
    ))
    await replica.start()
    one = await replica.call("__call__", (1,), {}, None)
    chunk, _seconds = await replica.chunk("__call__", [(1,), (2,)], {}, "fc-test", 0)
    items = [i async for i in replica.stream("count", (3,), {}, "fc-test")]
    await replica.stop()
    print(one, chunk, items)


asyncio.run(main())
assert not [m for m in sys.modules if m == "ray" or m.startswith("ray.")], "ray was imported"
"""


def test_the_replica_runtime_runs_without_ray() -> None:
    result = subprocess.run(
        [sys.executable, "-P", "-c", REPLICA_RUN],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "2 [2, 3] [0, 1, 2]"


def test_the_serve_deployment_class_delegates_to_the_replica_runtime() -> None:
    """backends/ray/serve.py keeps only the Ray-specific wrapper: it builds a `Replica` and
    never a `Container` itself."""
    tree = ast.parse((ROOT / "backends/ray/serve.py").read_text())
    imported = {
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert ("modal_ray.serve_adapters.replica", "Replica") in imported
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert "Container" not in names
