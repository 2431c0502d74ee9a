"""Run every benchmark, one after another, then rewrite docs/benchmarks.md.

`.venv/bin/python bench/run_all.py [--quick] [--render] [--all] [--only SCRIPT]`. By default it
runs the `.remote`/`.map`, `modal run`, class and deployed-app benchmarks (about 8 minutes on 2
cores); `--all` adds every other `bench_*.py` (e.g. Dict/Queue). Each benchmark runs in its own
process (with its own private local Ray or cluster head, shut down at its end) and stores its
section in `bench/results.json`; `--render` only rewrites the docs from that file. The machine
should be otherwise idle: both sides of every comparison share it, but a busy machine widens the
spread.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import common
from common import log

CORE = ["bench_functions.py", "bench_modal_run.py", "bench_classes.py", "bench_deploy.py"]
SCRIPT_TIMEOUT_S = 600


def benchmarks(everything: bool) -> list[str]:
    """The core benchmarks, then (with `--all`) any other `bench_*.py` here, alphabetically."""
    others = sorted(p.name for p in common.BENCH_DIR.glob("bench_*.py") if p.name not in CORE)
    return CORE + others if everything else list(CORE)


def run(cmd: list[str]) -> int:
    """Run one benchmark script; past the time limit stop it (SIGTERM, then SIGKILL) by its pid.

    The local Ray a script starts is its child and is fate-shared with it, so it goes too."""
    proc = subprocess.Popen(cmd, cwd=common.REPO_ROOT)
    try:
        return proc.wait(timeout=SCRIPT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        log(f"timed out after {SCRIPT_TIMEOUT_S} s; stopping pid {proc.pid}")
        proc.terminate()
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples (smoke run)")
    parser.add_argument("--render", action="store_true", help="only rewrite docs/benchmarks.md")
    parser.add_argument("--all", action="store_true", help="also every other bench/bench_*.py")
    parser.add_argument("--only", action="append", help="run only this script (repeatable)")
    args = parser.parse_args(argv)
    if args.render:
        common.render_docs()
        return 0

    common.quiet_env()
    failed = []
    t0 = time.perf_counter()
    for script in benchmarks(args.all or bool(args.only)):
        if args.only and script not in args.only and script.removesuffix(".py") not in args.only:
            continue
        cmd = [sys.executable, str(common.BENCH_DIR / script), "--no-docs"]
        if args.quick:
            cmd += ["--repeats", "1"] if script == "bench_modal_run.py" else ["--quick"]
        log(f"running {script}")
        started = time.perf_counter()
        rc = run(cmd)
        log(f"{script}: exit {rc} after {time.perf_counter() - started:.0f} s")
        if rc != 0:
            failed.append(script)
    common.render_docs()
    log(f"all benchmarks: {time.perf_counter() - t0:.0f} s; wrote {common.DOCS_MD}")
    if failed:
        log(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
