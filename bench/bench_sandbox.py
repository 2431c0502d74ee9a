"""`modal.Sandbox` against starting the same bubblewrap command directly, on one local Ray.

1. Create-to-first-output: `Sandbox.create("python", "-c", "print(...)")` until the first line
   of `sb.stdout` arrives, against `Popen` of the same `bwrap` command line (same namespaces,
   same private root, same binds, an empty network namespace) printing the same line (target:
   within 1.5x, for `block_network=True`, which runs that command; a sandbox with outbound
   network also waits for slirp4netns to be attached, reported beside it).
2. Exec round trip: `sb.exec("true").wait()` in a running sandbox, against a raw Ray actor on the
   same node running `subprocess.run(["true"])` (the raw-Ray way to run a process on a node).
3. 100 sandboxes alive at once: created concurrently (`Sandbox.create.aio`), each then answering
   an exec, then all terminated; wall times and the node's memory growth while they live.

Run: `.venv/bin/python bench/bench_sandbox.py [--quick] [--no-save] [--no-docs]`. It stores the
`sandbox` section of `bench/results.json` (unless `--no-save`) and rewrites docs/benchmarks.md
from that file (unless `--no-docs`).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import common
from common import Latency, Row, Section, fmt_ms, fmt_s, log

SECTION_TITLE = "Sandboxes"
FIRST_OUTPUT_TARGET = 1.5


def _raw_bwrap_factory() -> tuple[Any, Any]:
    """A function starting the same bwrap command the supervisor runs, printing one line."""
    from modal_ray.sandbox_runtime import isolation

    bwrap = isolation.check_isolation()
    assert bwrap is not None, "the benchmark compares isolated sandboxes"
    base = Path(tempfile.mkdtemp(prefix="bench-sbx-"))

    def run_once() -> float:
        root = Path(tempfile.mkdtemp(dir=base)) / "root"
        for sub in ("tmp", "root", "etc", "var/tmp", "home"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        layout = isolation.Layout(
            root=str(root),
            workdir="/",
            block_network=False,
            agent=str(Path(isolation.__file__).with_name("agent.py")),
        )
        argv = isolation.bwrap_argv(bwrap, layout, 0)
        cut = argv.index("--")
        argv = [*argv[: cut + 1], isolation.sandbox_python(), "-c", "print('ready')"]
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        elapsed = time.perf_counter() - t0
        assert line == b"ready\n", line
        proc.wait()
        shutil.rmtree(root.parent, ignore_errors=True)
        return elapsed

    return run_once, lambda: shutil.rmtree(base, ignore_errors=True)


def bench_first_output(samples: int, block_network: bool) -> Row:
    """`block_network=True` runs the very command the raw side runs (an empty network
    namespace); without it the sandbox also gets its outbound network (slirp4netns attached
    before anything runs), which the raw command does not have."""
    import modal

    def ours() -> float:
        t0 = time.perf_counter()
        sb = modal.Sandbox.create(
            "python", "-c", "print('ready')", timeout=60, block_network=block_network
        )
        line = next(iter(sb.stdout))
        elapsed = time.perf_counter() - t0
        assert line == "ready\n", line
        sb.wait(raise_on_termination=False)
        return elapsed

    raw, cleanup = _raw_bwrap_factory()
    try:
        ours(), raw()  # warm up: supervisor actor, caches
        got: dict[str, list[float]] = {"ours": [], "raw": []}
        for i in range(samples):
            order = [("ours", ours), ("raw", raw)] if i % 2 == 0 else [("raw", raw), ("ours", ours)]
            for name, fn in order:
                got[name].append(fn())
    finally:
        cleanup()
    o, r = Latency.of(got["ours"]), Latency.of(got["raw"])
    ratio = o.median_s / r.median_s
    if block_network:
        what, target = "create-to-first-output (`block_network=True`: the same command)", True
    else:
        what, target = "create-to-first-output (with outbound network: + slirp4netns)", False
    return Row(
        what=what,
        metric="latency",
        unit="s",
        ours=f"p50 {fmt_ms(o.median_s)}, p99 {fmt_ms(o.p99_s)}",
        raw=f"p50 {fmt_ms(r.median_s)}, p99 {fmt_ms(r.p99_s)} (bwrap directly, no network)",
        ratio=ratio,
        ratio_label=f"{ratio:.2f}x",
        target=f"<= {FIRST_OUTPUT_TARGET}x" if target else "",
        passed=(ratio <= FIRST_OUTPUT_TARGET) if target else None,
        note=f"{samples} samples per side, alternating",
    )


def bench_exec(samples: int) -> Row:
    import ray

    import modal

    @ray.remote(num_cpus=0)
    class Runner:
        def run(self) -> int:
            return subprocess.run(["true"], check=False).returncode

    runner = Runner.remote()  # type: ignore[attr-defined]
    sb = modal.Sandbox.create(timeout=600)
    try:
        lat = common.interleaved_latency(
            {
                "ours": lambda: sb.exec("true").wait(),
                "raw": lambda: ray.get(runner.run.remote()),
            },
            samples=samples,
            warmup=5,
        )
    finally:
        sb.terminate()
        ray.kill(runner)
    o, r = lat["ours"], lat["raw"]
    ratio = o.median_s / r.median_s
    return Row(
        what="exec round trip (`true`)",
        metric="latency",
        unit="s",
        ours=f"p50 {fmt_ms(o.median_s)}, p99 {fmt_ms(o.p99_s)}",
        raw=f"p50 {fmt_ms(r.median_s)}, p99 {fmt_ms(r.p99_s)} (actor + subprocess.run)",
        ratio=ratio,
        ratio_label=f"{ratio:.2f}x",
    )


def _used_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().used)


def bench_many(count: int) -> Row:
    import modal

    async def scenario() -> tuple[float, float, float, int]:
        before = _used_memory()
        t0 = time.perf_counter()
        boxes = await asyncio.gather(*(modal.Sandbox.create.aio(timeout=600) for _ in range(count)))
        created = time.perf_counter() - t0
        grown = _used_memory() - before
        t1 = time.perf_counter()

        async def echo(i: int, sb: Any) -> None:
            p = await sb.exec.aio("echo", str(i))
            assert await p.stdout.read.aio() == f"{i}\n"

        await asyncio.gather(*(echo(i, sb) for i, sb in enumerate(boxes)))
        execs = time.perf_counter() - t1
        alive = sum(1 for s in await asyncio.gather(*(sb.poll.aio() for sb in boxes)) if s is None)
        assert alive == count, alive
        t2 = time.perf_counter()
        await asyncio.gather(*(sb.terminate.aio() for sb in boxes))
        return created, execs, time.perf_counter() - t2, grown

    created, execs, terminated, grown = asyncio.run(scenario())
    return Row(
        what=f"{count} sandboxes alive at once",
        metric="wall",
        unit="s",
        ours=(
            f"create {fmt_s(created)}, one exec each {fmt_s(execs)},"
            f" terminate {fmt_s(terminated)}; +{grown / count / 2**20:.1f} MiB per sandbox"
        ),
        raw="-",
        ratio=0.0,
        ratio_label="-",
        note="created concurrently with `Sandbox.create.aio`; memory = node's used memory growth",
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-save", action="store_true", help="print only; write nothing")
    parser.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    parser.add_argument(
        "--only",
        choices=("first-output", "exec", "many"),
        help="run one measurement (a quick check: prints only)",
    )
    args = parser.parse_args()
    common.quiet_env()
    import ray

    ray.init(**common.RAY_INIT_KWARGS, namespace="modal-main")
    started = time.perf_counter()
    section = Section(
        key="sandbox",
        title=SECTION_TITLE,
        description=(
            "`modal.Sandbox` (per-node supervisor actor, bubblewrap isolation) against starting"
            " the same bubblewrap command directly, and against a raw Ray actor running a"
            " process. One local Ray, alternating sides."
        ),
    )
    try:
        if args.only in (None, "first-output"):
            log("create-to-first-output")
            for block_network in (True, False):
                section.rows.append(bench_first_output(10 if args.quick else 40, block_network))
        if args.only in (None, "exec"):
            log("exec round trip")
            section.rows.append(bench_exec(50 if args.quick else 200))
        if args.only in (None, "many"):
            log("many sandboxes")
            section.rows.append(bench_many(20 if args.quick else 100))
    finally:
        ray.shutdown()
    section.elapsed_s = time.perf_counter() - started
    for row in section.rows:
        print(f"{row.what}: ours {row.ours} | raw {row.raw} | {row.ratio_label} {row.target}")
    if args.only or args.no_save:
        return
    common.save_section(section)
    if not args.no_docs:
        common.render_docs()


if __name__ == "__main__":
    main()
