"""Durable spawned calls: what the call keeper costs a `.spawn` on a long-lived cluster.

On a head started by `modal-ray cluster start` (4 CPUs, a temporary state store), for a trivial
task-backed function of a deployed app looked up by name, alternating in one process:

1. `.remote(1)`: the round trip of a plain call (the keeper is never involved);
2. `.spawn(1)`: until the call is recorded by the keeper (what a spawner waits for);
3. `.spawn(1).get()`: spawn, run and read the result back from the keeper;

and for 2,000 inputs: `.spawn` of each then `FunctionCall.gather` (all run and read back), and
`spawn_map` until every input is recorded. The raw side is a plain `@ray.remote` task on the same
cluster from the same process: `ray.get(f.remote(1))` per call, and 2,000 `f.remote` then one
`ray.get` of all (raw Ray keeps nothing once the caller exits: that durability is what the
keeper adds).

Run: `.venv/bin/python bench/bench_durable_calls.py [--quick] [--no-save] [--no-docs]`. It stores
the `durable_calls` section of `bench/results.json` (unless `--no-save`) and rewrites
docs/benchmarks.md from that file (unless `--no-docs`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import common
from common import Latency, Row, Section, fmt_ms

BIN = Path(sys.executable).parent

APP = textwrap.dedent(
    """
    import modal

    app = modal.App("bench-durable")


    @app.function()
    def echo(x):
        return x
    """
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer samples (smoke run)")
    parser.add_argument("--samples", type=int, default=0, help="calls per side (default 300)")
    parser.add_argument("--map-inputs", type=int, default=2000)
    parser.add_argument("--no-save", action="store_true", help="print only; write nothing")
    parser.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    args = parser.parse_args()
    samples = args.samples or (60 if args.quick else 300)
    inputs = 500 if args.quick else args.map_inputs
    bench_started = time.perf_counter()
    common.quiet_env()
    work = Path(tempfile.mkdtemp(prefix="bench-durable-"))
    os.environ["MODAL_RAY_STATE"] = str(work / "state")
    started = subprocess.run(
        [str(BIN / "modal-ray"), "cluster", "start", "--num-cpus", "4"],
        capture_output=True,
        text=True,
        check=True,
    )
    address = next(
        x.split("=", 1)[1] for x in started.stdout.splitlines() if x.startswith("export ")
    )
    os.environ["MODAL_RAY_ADDRESS"] = address
    try:
        (work / "bench_app.py").write_text(APP)
        subprocess.run(
            [str(BIN / "modal"), "deploy", "bench_app.py"],
            cwd=work,
            check=True,
            capture_output=True,
        )
        import ray

        import modal

        echo = modal.Function.from_name("bench-durable", "echo")
        assert echo.remote(1) == 1
        assert echo.spawn(1).get() == 1

        @ray.remote
        def raw_echo(x: int) -> int:
            return x

        assert ray.get(raw_echo.remote(1)) == 1
        lat = common.interleaved_latency(
            {
                "remote": lambda: echo.remote(1),
                "spawn": lambda: echo.spawn(1),
                "spawn_get": lambda: echo.spawn(1).get(),
                "raw": lambda: ray.get(raw_echo.remote(1)),
            },
            samples=samples,
            rounds=10,
            warmup=30,
        )
        t0 = time.perf_counter()
        calls = [echo.spawn(i) for i in range(inputs)]
        assert list(modal.FunctionCall.gather(*calls)) == list(range(inputs))
        gathered = time.perf_counter() - t0
        t0 = time.perf_counter()
        assert ray.get([raw_echo.remote(i) for i in range(inputs)]) == list(range(inputs))
        raw_many = time.perf_counter() - t0
        t0 = time.perf_counter()
        echo.spawn_map(range(inputs))
        submitted = time.perf_counter() - t0
    finally:
        import ray

        ray.shutdown()
        subprocess.run([str(BIN / "modal-ray"), "cluster", "stop"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    section = Section(
        key="durable_calls",
        title="Durable spawned calls",
        description=(
            "A trivial function of an app deployed on a head started by `modal-ray cluster"
            " start` (4 CPUs), looked up by name, against a plain `@ray.remote` task on the same"
            " cluster from the same process; sides alternate in rounds. `.spawn` records the"
            " call in the environment's call keeper, which keeps its result for 7 days."
        ),
    )
    raw = lat["raw"]
    for key, what in (
        ("remote", "`.remote()` by name vs `ray.get(f.remote())`"),
        ("spawn", "`.spawn()` until recorded vs `ray.get(f.remote())`"),
        ("spawn_get", "`.spawn().get()` vs `ray.get(f.remote())`"),
    ):
        ours: Latency = lat[key]
        ratio = ours.median_s / raw.median_s
        section.rows.append(
            Row(
                what=what,
                metric="latency",
                unit="ms",
                ours=f"{fmt_ms(ours.median_s)} (p99 {fmt_ms(ours.p99_s)})",
                raw=f"{fmt_ms(raw.median_s)} (p99 {fmt_ms(raw.p99_s)})",
                ratio=ratio,
                ratio_label=f"{ratio:.2f}x raw",
                note=f"median of {ours.n} calls per side",
            )
        )
    rate, raw_rate = inputs / gathered, inputs / raw_many
    section.rows.append(
        Row(
            what=f"{inputs:,} `.spawn` + `FunctionCall.gather` vs `f.remote` + `ray.get`",
            metric="throughput",
            unit="calls/s",
            ours=f"{rate:,.0f} calls/s",
            raw=f"{raw_rate:,.0f} calls/s",
            ratio=rate / raw_rate,
            ratio_label=f"{rate / raw_rate:.2f}x raw",
        )
    )
    section.notes.append(
        f"`spawn_map` of {inputs:,} inputs: all recorded in {submitted:.2f} s"
        f" ({inputs / submitted:,.0f} inputs/s); they then run on the cluster"
    )
    section.elapsed_s = time.perf_counter() - bench_started
    for row in section.rows:
        print(f"{row.what}: ours {row.ours} | raw {row.raw} | {row.ratio_label}")
    for note in section.notes:
        print(note)
    if args.no_save:
        return
    common.save_section(section)
    if not args.no_docs:
        common.render_docs()


if __name__ == "__main__":
    main()
