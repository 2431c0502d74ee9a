"""Durable spawned calls: what the call keeper costs a `.spawn` on a long-lived cluster.

On a head started by `modal-ray cluster start` (4 CPUs, a temporary state store), for a trivial
task-backed function of a deployed app looked up by name, alternating in one process:

1. `.remote(1)`: the round trip of a plain call (the keeper is never involved);
2. `.spawn(1)`: until the call is recorded by the keeper (what a spawner waits for);
3. `.spawn(1).get()`: spawn, run and read the result back from the keeper;

and for 2,000 inputs: `.spawn` of each then `FunctionCall.gather` (all run and read back), and
`spawn_map` until every input is recorded.

Run: `.venv/bin/python bench/bench_durable_calls.py [--samples N]` (prints; saves nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import common

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
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--map-inputs", type=int, default=2000)
    args = parser.parse_args()
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
        import modal

        echo = modal.Function.from_name("bench-durable", "echo")
        assert echo.remote(1) == 1
        assert echo.spawn(1).get() == 1
        lat = common.interleaved_latency(
            {
                "remote": lambda: echo.remote(1),
                "spawn": lambda: echo.spawn(1),
                "spawn_get": lambda: echo.spawn(1).get(),
            },
            samples=args.samples,
            rounds=10,
            warmup=30,
        )
        for name, stats in lat.items():
            common.log(
                f"{name}: p50 {common.fmt_ms(stats.median_s)} (p99 {common.fmt_ms(stats.p99_s)})"
            )
        t0 = time.perf_counter()
        calls = [echo.spawn(i) for i in range(args.map_inputs)]
        assert list(modal.FunctionCall.gather(*calls)) == list(range(args.map_inputs))
        gathered = time.perf_counter() - t0
        common.log(
            f"{args.map_inputs} spawns + gather: {gathered:.2f} s"
            f" ({args.map_inputs / gathered:.0f} calls/s)"
        )
        t0 = time.perf_counter()
        echo.spawn_map(range(args.map_inputs))
        submitted = time.perf_counter() - t0
        common.log(
            f"spawn_map of {args.map_inputs}: recorded in {submitted:.2f} s"
            f" ({args.map_inputs / submitted:.0f} inputs/s)"
        )
        print(
            json.dumps(
                {
                    **{f"{k}_p50_ms": v.median_s * 1e3 for k, v in lat.items()},
                    **{f"{k}_p99_ms": v.p99_s * 1e3 for k, v in lat.items()},
                    "spawn_gather_s": gathered,
                    "spawn_map_submit_s": submitted,
                }
            )
        )
    finally:
        import ray

        ray.shutdown()
        subprocess.run([str(BIN / "modal-ray"), "cluster", "stop"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
