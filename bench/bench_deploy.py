"""Deployed apps: deploy time, and a call by name against the same call in the deploying process.

On a head started by `modal-ray cluster start` (4 CPUs, a temporary state store):

1. `modal deploy` of a 3-function app, wall time of the whole command (a fresh process each
   time, as users run it), median of 3.
2. The round trip of `.remote(1)` on a task-backed function looked up by name
   (`modal.Function.from_name` once, then `.remote`) against the same function called in a
   process that runs the app (`with app.run():`), alternating sides in one process. Target: the
   call by name within 1.2x.

Run: `.venv/bin/python bench/bench_deploy.py [--samples N]` (prints; saves nothing).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import common

BIN = Path(sys.executable).parent
TARGET = 1.2

APP = textwrap.dedent(
    """
    import modal

    app = modal.App("bench-deploy")


    @app.function()
    def echo(x):
        return x


    @app.function()
    def double(x):
        return 2 * x


    @app.function()
    def square(x):
        return x * x
    """
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=500)
    args = parser.parse_args()
    common.quiet_env()
    work = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
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
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run(
                [str(BIN / "modal"), "deploy", "bench_app.py"],
                cwd=work,
                check=True,
                capture_output=True,
            )
            times.append(time.perf_counter() - t0)
        common.log(
            f"modal deploy (3 functions): median {statistics.median(times):.2f} s"
            f" ({', '.join(f'{t:.2f}' for t in times)})"
        )

        import modal

        sys.path.insert(0, str(work))
        bench_app = importlib.import_module("bench_app")
        by_name = modal.Function.from_name("bench-deploy", "echo")
        with bench_app.app.run():
            local = bench_app.echo
            assert local.remote(1) == 1
            assert by_name.remote(1) == 1
            lat = common.interleaved_latency(
                {"by_name": lambda: by_name.remote(1), "in_app": lambda: local.remote(1)},
                samples=args.samples,
                rounds=10,
                warmup=50,
            )
        ours, base = lat["by_name"], lat["in_app"]
        ratio = ours.median_s / base.median_s
        common.log(
            f"call by name p50 {common.fmt_ms(ours.median_s)} (p99 {common.fmt_ms(ours.p99_s)})"
            f" vs in the app {common.fmt_ms(base.median_s)} (p99 {common.fmt_ms(base.p99_s)}):"
            f" {ratio:.2f}x"
            f" (target <= {TARGET}x) -> {'PASS' if ratio <= TARGET else 'FAIL'}"
        )
        print(
            json.dumps(
                {
                    "deploy_s": times,
                    "by_name_p50_ms": ours.median_s * 1e3,
                    "in_app_p50_ms": base.median_s * 1e3,
                    "ratio": ratio,
                }
            )
        )
    finally:
        import ray

        ray.shutdown()  # before the head goes: its processes' last words are not ours to print
        subprocess.run([str(BIN / "modal-ray"), "cluster", "stop"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
