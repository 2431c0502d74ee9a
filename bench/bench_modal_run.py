"""`modal run` of a hello-world program against a plain Python script doing the same with raw Ray.

Each run is a fresh process that starts (and at exit stops) its own private local Ray, so this
measures what a user waits for at the terminal: interpreter start, imports, Ray start, one
`.remote()` and a 20-input `.map`, Ray shutdown. Three variants alternate, each warmed up once:

- `modal run bench/programs/hello_modal.py` (the CLI);
- `python bench/programs/hello_modal.py` (the same program as a script, `with app.run():`);
- `python bench/programs/hello_raw.py` (raw Ray, `ray.init(address="local", ...)`).

Run: `.venv/bin/python bench/bench_modal_run.py [--repeats N]`.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import common
from common import Row, Section, fmt_s, log

PROGRAMS = common.BENCH_DIR / "programs"
HELLO_MODAL = PROGRAMS / "hello_modal.py"
HELLO_RAW = PROGRAMS / "hello_raw.py"
RUN_TIMEOUT_S = 120


PHASES = PROGRAMS / "phases.py"


def modal_cli() -> list[str]:
    """The `modal` console script, run through `phases.py` (it is a Python file)."""
    exe = Path(sys.executable).with_name("modal")
    if exe.exists():
        return [sys.executable, str(PHASES), str(exe)]
    return [sys.executable, "-m", "modal"]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    for key in ("RAY_ADDRESS", "MODAL_RAY_ADDRESS"):
        env.pop(key, None)
    # Same settings for every variant: no usage reporting; the product's defaults otherwise
    # (token authentication on, as modal-ray's embedded Ray has it).
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["RAY_AUTH_MODE"] = "token"
    return env


@dataclass(slots=True)
class Run:
    wall: float
    main_s: float | None = None  # from the wrapper's start to the end of the program's code
    exit_s: float | None = None  # from the end of the program's code to the process exit
    error: str | None = None


def run_once(cmd: list[str]) -> Run:
    """Wall seconds of one run (and its exit phase), or why it did not print the greeting."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            cwd=common.REPO_ROOT,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Run(time.perf_counter() - t0, error=f"timed out after {RUN_TIMEOUT_S} s")
    wall = time.perf_counter() - t0
    main_s = exit_s = None
    if m := re.search(r"BENCH-PHASES main=(\S+) exit=(\S+)", proc.stderr):
        main_s, exit_s = float(m.group(1)), float(m.group(2))
    if (
        proc.returncode != 0
        or "Hello, world!" not in proc.stdout
        or "Hello, 19!" not in proc.stdout
    ):
        lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("BENCH-PHASES")]
        tail = lines[-3:] or proc.stdout.strip().splitlines()[-3:]
        return Run(wall, main_s, exit_s, f"exit code {proc.returncode}: {' / '.join(tail)}")
    return Run(wall, main_s, exit_s)


def _secs(walls: list[float]) -> str:
    return ", ".join(f"{w:.2f}" for w in walls) + " s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args(argv)

    variants = {
        "modal run": [*modal_cli(), "run", str(HELLO_MODAL.relative_to(common.REPO_ROOT))],
        "script": [sys.executable, str(PHASES), str(HELLO_MODAL)],
        "raw": [sys.executable, str(PHASES), str(HELLO_RAW)],
    }
    t_start = time.perf_counter()
    # One warmup run (page cache, .pyc files of modal-ray and Ray) that every variant shares.
    warm = run_once(variants["script"])
    log(f"warmup: {warm.wall:.2f} s" + (f" FAILED {warm.error}" if warm.error else ""))
    runs: dict[str, list[Run]] = {name: [] for name in variants}
    errors: dict[str, str] = {}
    for r in range(args.repeats):
        order = list(variants.items())
        if r % 2:
            order.reverse()
        for name, cmd in order:
            if name in errors:
                continue
            run = run_once(cmd)
            if run.error:
                errors[name] = run.error
                log(f"{name} FAILED: {run.error}")
                continue
            runs[name].append(run)
            log(f"round {r + 1}/{args.repeats}: {name} {run.wall:.2f} s (exit {run.exit_s} s)")

    section = Section(
        key="modal_run",
        title="`modal run` of a hello-world program",
        description=(
            "Wall time of a whole fresh process, from launch to exit, each starting and stopping"
            " its own private local Ray: `modal run bench/programs/hello_modal.py` (one `.remote()`"
            " and a 20-input `.map` in a `@app.local_entrypoint`), the same program run as a script"
            " (`python bench/programs/hello_modal.py`, `with app.run():`), and"
            " `python bench/programs/hello_raw.py` doing the same with `@ray.remote` and"
            ' `ray.init(address="local", include_dashboard=False, logging_level="ERROR")`.'
            f" Median of {args.repeats} alternating runs each, after one shared warmup run; all"
            " with `RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=token` (the product's default). Each"
            " program runs under `bench/programs/phases.py`, which also reports the exit phase"
            " (from the end of the program's code to process exit: thread joins and Ray's"
            " shutdown hook)."
        ),
    )

    def exit_median(name: str) -> float | None:
        values = [r.exit_s for r in runs[name] if r.exit_s is not None]
        return statistics.median(values) if values else None

    def main_median(name: str) -> float | None:
        values = [r.main_s for r in runs[name] if r.main_s is not None]
        return statistics.median(values) if values else None

    raw = [r.wall for r in runs["raw"]]
    raw_exit = exit_median("raw")
    for name, what in (
        ("modal run", "`modal run hello_modal.py`"),
        ("script", "`python hello_modal.py`"),
    ):
        walls = [r.wall for r in runs[name]]
        if name in errors or not walls or not raw:
            reason = errors.get(name) or errors.get("raw", "no samples")
            section.rows.append(
                Row(
                    what=f"{what} vs `python hello_raw.py`",
                    metric="wall",
                    unit="s",
                    ours="failed",
                    raw=fmt_s(statistics.median(raw)) if raw else "failed",
                    ratio=float("nan"),
                    ratio_label="n/a",
                    note=f"did not complete: `{reason}`",
                )
            )
            continue
        ours = statistics.median(walls)
        base = statistics.median(raw)
        note = f"runs {_secs(walls)}; raw {_secs(raw)}"
        ours_exit = exit_median(name)
        ours_main, raw_main = main_median(name), main_median("raw")
        if ours_main is not None and raw_main is not None:
            note += f"; program phase (median) {ours_main:.2f} s vs raw {raw_main:.2f} s"
        if ours_exit is not None and raw_exit is not None:
            note += f"; exit phase (median) {ours_exit:.2f} s vs raw {raw_exit:.2f} s"
        section.rows.append(
            Row(
                what=f"{what} vs `python hello_raw.py`",
                metric="wall",
                unit="s",
                ours=fmt_s(ours),
                raw=fmt_s(base),
                ratio=ours / base,
                ratio_label=f"{ours / base:.2f}x raw ({ours - base:+.1f} s)",
                note=note,
            )
        )
    section.notes.append(
        "On a shared 2-core machine a fresh process's start varies by seconds from run to run"
        " (Ray's init time moves in steps of about 1 s; see the per-run figures and the load"
        " average), so these ratios are coarse: read the per-phase medians for where time goes."
    )
    script_exit = exit_median("script")
    if script_exit is not None and raw_exit is not None and script_exit > raw_exit + 5:
        section.notes.append(
            f"`python hello_modal.py` spends {script_exit:.1f} s in its exit phase against"
            f" {raw_exit:.1f} s for raw Ray: Ray's exit hook blocks in"
            " `core_worker.shutdown_driver()`. Raw Ray does the same when `ray.init` runs on a"
            " thread other than the main thread (a `threading.Thread` running `ray.init` gives"
            " ~15.5 s exits here), and `with app.run():` starts the embedded Ray from an executor"
            " thread (`compat/modal_ray/app.py: App._start`, `run_in_executor(None,"
            " backend.connect)`). `modal run` does not pay it."
        )
    section.elapsed_s = time.perf_counter() - t_start
    common.save_section(section)
    log(f"modal_run: {[r.ratio_label for r in section.rows]}")
    if not args.no_docs:
        common.render_docs()
    return 0


if __name__ == "__main__":
    sys.exit(main())
