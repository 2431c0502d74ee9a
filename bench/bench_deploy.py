"""Deployed apps: deploy time, and a call by name against the same call in the deploying process.

On a head started by `modal-ray cluster start` (4 CPUs, a temporary state store):

1. `modal deploy` of a 3-function app, wall time of the whole command (a fresh process each
   time, as users run it), median of 3, against a raw Ray process that only connects to the
   same head and exits (`python -c "import ray; ray.init(address=...)"`), the floor of any
   command that talks to the cluster.
2. The round trip of `.remote(1)` on a task-backed function looked up by name
   (`modal.Function.from_name` once, then `.remote`) against the same function called in a
   process that runs the app (`with app.run():`), alternating sides in one process. Target: the
   call by name within 1.2x.

Run: `.venv/bin/python bench/bench_deploy.py [--quick] [--samples N] [--no-docs] [--no-save]`.
It stores the `deploy` section of `bench/results.json` (unless `--no-save`) and rewrites
docs/benchmarks.md from that file (unless `--no-docs`).
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
from common import Latency, Row, Section, fmt_ms, fmt_s

BIN = Path(sys.executable).parent
TARGET = 1.2
SECTION_TITLE = "Deployed apps"
DESCRIPTION = (
    "On a head started by `modal-ray cluster start --num-cpus 4` (token authentication on, a"
    " temporary state store), not the `ray.init` above. **Call by name**: `.remote(1)` of a"
    " trivial task-backed function of a deployed app, looked up once with"
    " `modal.Function.from_name`, against the same function called in a process that runs the"
    ' app (`with app.run():`, the "raw Ray" column), alternating in rounds in one process.'
    " **Deploy**: the wall time of `modal deploy` of a 3-function app (a fresh process each"
    " time, as users run it; a redeploy after the first) against a raw Ray process that only"
    " connects to the head and exits."
)
RAW_CONNECT = (
    "import ray, sys;"
    " ray.init(address=sys.argv[1], logging_level='ERROR', _node_ip_address='127.0.0.1')"
)

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


def _wall(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True, timeout=300)
    return time.perf_counter() - t0


def _section(
    deploys: list[float], connects: list[float], ours: Latency, base: Latency, elapsed: float
) -> Section:
    ratio = ours.median_s / base.median_s
    deploy, connect = statistics.median(deploys), statistics.median(connects)
    rows = [
        Row(
            what="call by name (`from_name` once, then `.remote(1)`) vs the same call in the app",
            metric="latency",
            unit="ms",
            ours=f"{fmt_ms(ours.median_s)} (p99 {fmt_ms(ours.p99_s)})",
            raw=f"{fmt_ms(base.median_s)} (p99 {fmt_ms(base.p99_s)})",
            ratio=ratio,
            ratio_label=f"{ratio:.2f}x latency",
            target=f"<= {TARGET:.2f}x",
            passed=ratio <= TARGET,
            note=f'{ours.n} calls per side; "raw Ray" is the call in the deploying process',
        ),
        Row(
            what="`modal deploy` of a 3-function app vs a raw Ray process connecting",
            metric="wall",
            unit="s",
            ours=f"{fmt_s(deploy)} ({', '.join(f'{t:.2f}' for t in deploys)})",
            raw=f"{fmt_s(connect)} ({', '.join(f'{t:.2f}' for t in connects)})",
            ratio=deploy / connect,
            ratio_label=f"{deploy / connect:.2f}x wall",
            note=f"median of {len(deploys)} run(s) per side, alternating",
        ),
    ]
    return Section(
        key="deploy", title=SECTION_TITLE, description=DESCRIPTION, rows=rows, elapsed_s=elapsed
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples (smoke run)")
    parser.add_argument("--samples", type=int, default=0, help="calls per side (default 500)")
    parser.add_argument("--repeats", type=int, default=0, help="deploys (default 3)")
    parser.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    parser.add_argument("--no-save", action="store_true", help="print only; write nothing")
    args = parser.parse_args(argv)
    samples = args.samples or (100 if args.quick else 500)
    repeats = args.repeats or (1 if args.quick else 3)
    started_at = time.perf_counter()
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
        deploy = [str(BIN / "modal"), "deploy", "bench_app.py"]
        connect = [sys.executable, "-c", RAW_CONNECT, address]
        # What a raw Ray client of this head needs (docs/operations.md): its token, and the
        # single-machine mode that keeps the client's node address on loopback.
        raw_env = {
            **os.environ,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(work / "state" / "cluster" / "auth_token"),
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        }
        deploys: list[float] = []
        connects: list[float] = []
        for i in range(repeats):
            if i % 2 == 0:
                deploys.append(_wall(deploy, work))
                connects.append(_wall(connect, work, raw_env))
            else:
                connects.append(_wall(connect, work, raw_env))
                deploys.append(_wall(deploy, work))
        common.log(
            f"modal deploy (3 functions): median {statistics.median(deploys):.2f} s"
            f" ({', '.join(f'{t:.2f}' for t in deploys)}); raw connect"
            f" {statistics.median(connects):.2f} s"
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
                samples=samples,
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
                    "deploy_s": deploys,
                    "raw_connect_s": connects,
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
    section = _section(deploys, connects, ours, base, time.perf_counter() - started_at)
    if not args.no_save:
        common.save_section(section)
        if not args.no_docs:
            common.render_docs()
            common.log(f"rewrote {common.DOCS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
