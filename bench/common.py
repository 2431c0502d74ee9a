"""Shared helpers for the benchmarks: Ray setup, timing, statistics, results and the report.

Every benchmark runs modal-ray and raw Ray in the same process against the same Ray (or, for
`modal run`, as alternating subprocesses), so machine noise hits both sides alike. Each benchmark
script stores its rows under its own key in `bench/results.json`; `render_docs()` turns the whole
file into `docs/benchmarks.md`. Nothing here is collected by pytest (testpaths = tests).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_JSON = BENCH_DIR / "results.json"
DOCS_MD = REPO_ROOT / "docs" / "benchmarks.md"

RAY_INIT_KWARGS: dict[str, Any] = {
    "address": "local",
    "num_cpus": 4,
    "include_dashboard": False,
    "logging_level": "ERROR",
}


def quiet_env() -> None:
    """Environment for a private local Ray (never attach to someone else's cluster), with the
    product's defaults: token authentication on, as modal-ray's embedded Ray has it, even if the
    calling shell turned it off. Call it before `import ray`: Ray reads its config at import."""
    os.environ.pop("RAY_ADDRESS", None)
    os.environ.pop("MODAL_RAY_ADDRESS", None)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ["RAY_AUTH_MODE"] = "token"


def start_ray() -> None:
    """One local Ray shared by both sides of every in-process benchmark (see `quiet_env`)."""
    quiet_env()
    import ray

    ray.init(**RAY_INIT_KWARGS)


# -- statistics -------------------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted samples."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Latency:
    n: int
    median_s: float
    p99_s: float
    mean_s: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Latency:
        return cls(
            len(samples),
            statistics.median(samples),
            percentile(samples, 99),
            statistics.fmean(samples),
        )


def timed(fn: Callable[[], Any]) -> float:
    """Wall seconds of one call."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved_latency(
    sides: dict[str, Callable[[], Any]],
    *,
    samples: int,
    rounds: int = 10,
    warmup: int = 50,
) -> dict[str, Latency]:
    """Per-call latency of each side, alternating sides in `rounds` blocks to cancel drift."""
    for fn in sides.values():
        for _ in range(warmup):
            fn()
    per_round = max(1, samples // rounds)
    collected: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(rounds):
        # Alternate which side goes first so neither always follows the other.
        order = list(sides.items()) if r % 2 == 0 else list(reversed(sides.items()))
        for name, fn in order:
            out = collected[name]
            for _ in range(per_round):
                t0 = time.perf_counter()
                fn()
                out.append(time.perf_counter() - t0)
    return {name: Latency.of(s) for name, s in collected.items()}


def interleaved_runs(
    sides: dict[str, Callable[[], Any]],
    *,
    repeats: int,
    warmup: int = 1,
) -> dict[str, list[float]]:
    """Wall seconds of whole runs (one workload each), alternating sides `repeats` times."""
    for fn in sides.values():
        for _ in range(warmup):
            fn()
    collected: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(repeats):
        order = list(sides.items()) if r % 2 == 0 else list(reversed(sides.items()))
        for name, fn in order:
            collected[name].append(timed(fn))
    return collected


# -- results ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Row:
    """One line of a benchmark table: ours against one raw-Ray baseline."""

    what: str
    metric: str  # "latency" (lower is better) or "throughput" (higher is better) or "wall"
    unit: str
    ours: str
    raw: str
    ratio: float  # ours / raw for latency and wall; ours / raw throughput for throughput
    ratio_label: str
    target: str = ""
    passed: bool | None = None  # None: no target
    note: str = ""


@dataclass(slots=True)
class Section:
    key: str
    title: str
    description: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0


def machine_info() -> dict[str, Any]:
    import ray

    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "ray": ray.__version__,
        "platform": platform.platform(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if hasattr(os, "getloadavg"):
        info["loadavg"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        from importlib.metadata import version

        info["modal_ray"] = version("modal-ray")
    except Exception:
        info["modal_ray"] = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            info["memory_gib"] = round(kb / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return info


def load_results() -> dict[str, Any]:
    if RESULTS_JSON.exists():
        return json.loads(RESULTS_JSON.read_text())  # type: ignore[no-any-return]
    return {"machine": {}, "sections": {}}


def save_section(section: Section) -> None:
    """Store (replace) one benchmark's section in bench/results.json, with the machine info."""
    data = load_results()
    data["machine"] = machine_info()
    if hasattr(os, "getloadavg"):
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
        section.notes.append(f"load average (1/5/15 min) at the end of this benchmark: {load}")
    data.setdefault("sections", {})[section.key] = asdict(section)
    RESULTS_JSON.write_text(json.dumps(data, indent=2) + "\n")


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def fmt_s(seconds: float) -> str:
    return f"{seconds:.2f} s"


def fmt_rate(per_s: float, unit: str = "inputs/s") -> str:
    return f"{per_s:,.0f} {unit}"


def verdict(passed: bool | None) -> str:
    if passed is None:
        return "-"
    return "**PASS**" if passed else "**MISS**"


SECTION_ORDER = ["remote", "map_trivial", "map_large", "modal_run"]

PROFILE_NOTES = """\
## Profiling notes (2026-11-27, by hand; rerun before relying on them)

`.venv/bin/python bench/bench_functions.py --profile` prints a cProfile of modal-ray's driver
side: the calling thread and modal-ray's event-loop thread, where `.map` submits its tasks.

- `.remote()`: the calling thread spends its time in Ray itself (`ray.get` waiting, then
  `RemoteFunction._remote`); modal-ray adds about 0.05 ms per call on top
  (`compat/modal_ray/function.py: Function._remote_sync`, `backends/ray/tasks.py:
  RayPrepared.submit`). Nothing to win there.
- `.map` of 10,000 trivial inputs: the calling thread only waits. Ray used to serialise each
  chunk's arguments object by object (a list of one tuple per input: ~0.17 s of 0.5-0.6 s per
  50,000 inputs); since then `backends/ray/tasks.py: RayPrepared.submit_chunk` ships each chunk,
  and the worker its outcomes, as one cloudpickled `bytes` object, which took the 10,000-input
  map from ~0.6x to ~0.85-1.0x hand-chunked raw Ray.
- Process exit: an earlier version started the embedded Ray from an executor thread in
  `App._start`; Ray's exit hook then blocked ~15 s in `core_worker.shutdown_driver()` (raw Ray
  does the same when `ray.init` runs off the main thread), so `python app.py` took 24-28 s
  against 12 s for raw Ray. `_RunContext._connect_here` (`compat/modal_ray/app.py`) now connects
  on the caller's thread; the exit-phase figures in the `modal run` table check it on every run.
"""

HOW_TO_RUN = """\
## How to run

```bash
.venv/bin/python bench/run_all.py            # .remote/.map, `modal run`, classes, deployed apps
.venv/bin/python bench/run_all.py --all      # also every other bench/bench_*.py (Dict, Queue, ...)
.venv/bin/python bench/run_all.py --only bench_functions.py   # one benchmark, then rewrite
.venv/bin/python bench/bench_functions.py    # .remote / .map only (updates its sections)
.venv/bin/python bench/bench_modal_run.py    # `modal run` vs a raw Ray script only
.venv/bin/python bench/bench_deploy.py       # deploy time, call by name (on its own cluster head)
.venv/bin/python bench/run_all.py --render   # rewrite this file from bench/results.json
.venv/bin/python bench/bench_functions.py --profile   # cProfile of modal-ray's driver side
```

Each script starts its own private local Ray
(`ray.init(address="local", num_cpus=4, include_dashboard=False, logging_level="ERROR")`), runs
modal-ray (`with app.run():`, which uses the existing Ray connection) and raw Ray against that
same Ray in the same process, alternating the two sides in rounds to cancel drift, and shuts Ray
down at the end. Raw results are stored in `bench/results.json`. Nothing here runs under pytest.
The suite takes a few minutes on a 2-core machine; run nothing else heavy meanwhile.
"""


def _table(rows: Iterable[Row]) -> list[str]:
    lines = [
        "| what | modal-ray | raw Ray (same run) | ratio | target | result |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [r.what, r.ours, r.raw, r.ratio_label, r.target or "-", verdict(r.passed)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_docs(extra_intro: str = "") -> str:
    """Rewrite docs/benchmarks.md from bench/results.json; return the text."""
    data = load_results()
    m = data.get("machine", {})
    sections: dict[str, Any] = data.get("sections", {})
    out = [
        "# Benchmarks: modal-ray against raw Ray",
        "",
        "Every figure below compares modal-ray with raw Ray doing the same work **in the same",
        "run** (same process, same local Ray, sides alternated), so the ratio is the number that",
        "matters; absolute numbers depend heavily on the machine. Generated by `bench/run_all.py`",
        "from `bench/results.json`; do not edit the tables by hand.",
        "",
        "## Machine",
        "",
        f"- date: {m.get('date', '?')}",
        f"- CPUs (nproc): {m.get('nproc', '?')}" + (f" ({m['cpu']})" if m.get("cpu") else ""),
        f"- memory: {m.get('memory_gib', '?')} GiB",
        f"- Python {m.get('python', '?')}, Ray {m.get('ray', '?')},"
        f" modal-ray {m.get('modal_ray', '?')}",
        f"- platform: {m.get('platform', '?')}",
        f"- load average (1/5/15 min) when the last section was saved: {m.get('loadavg', '?')}",
        '- Ray: `ray.init(address="local", num_cpus=4, include_dashboard=False, '
        'logging_level="ERROR")` (4 logical CPUs on the cores above)',
        "",
    ]
    if extra_intro:
        out += [extra_intro, ""]
    targets: list[Row] = [
        Row(**r) if isinstance(r, dict) else r
        for key in SECTION_ORDER + sorted(set(sections) - set(SECTION_ORDER))
        if key in sections
        for r in sections[key]["rows"]
    ]
    targeted = [r for r in targets if r.passed is not None]
    if targeted:
        out += ["## Targets at a glance", ""]
        out += ["| target | measured | result |", "|---|---|---|"]
        for r in targeted:
            out.append(f"| {r.what}: {r.target} | {r.ratio_label} | {verdict(r.passed)} |")
        out.append("")
    for key in SECTION_ORDER + sorted(set(sections) - set(SECTION_ORDER)):
        if key not in sections:
            continue
        s = sections[key]
        rows = [Row(**r) for r in s["rows"]]
        out += [f"## {s['title']}", "", s["description"], ""]
        out += _table(rows)
        out.append("")
        for r in rows:
            if r.note:
                out.append(f"- {r.what}: {r.note}")
        for note in s.get("notes", []):
            out.append(f"- {note}")
        if s.get("elapsed_s"):
            out.append(f"- benchmark wall time: {s['elapsed_s']:.0f} s")
        out.append("")
    out.append(PROFILE_NOTES)
    out.append(HOW_TO_RUN)
    text = "\n".join(out).rstrip() + "\n"
    DOCS_MD.parent.mkdir(parents=True, exist_ok=True)
    DOCS_MD.write_text(text)
    return text


def write_docs_section(section: Section, script: str) -> None:
    """Replace (or append) this section alone in docs/benchmarks.md (for `bench_*.py` scripts
    whose sections `render_docs` does not lay out)."""
    lines = [f"## {section.title}", "", section.description, ""]
    lines += _table(section.rows)
    lines.append("")
    for r in section.rows:
        if r.note:
            lines.append(f"- {r.what}: {r.note}")
    for note in section.notes:
        lines.append(f"- {note}")
    if section.elapsed_s:
        lines.append(f"- benchmark wall time: {section.elapsed_s:.0f} s")
    m = machine_info()
    lines.append(
        f"- run {m.get('date', '?')} on {m.get('nproc', '?')} CPUs ({m.get('cpu', '?')}), Ray"
        f" {m.get('ray', '?')}: `.venv/bin/python bench/{script}`"
    )
    block = "\n".join(lines).rstrip() + "\n"
    path = DOCS_MD
    text = path.read_text() if path.exists() else "# Benchmarks: modal-ray against raw Ray\n"
    heading = f"## {section.title}\n"
    if heading in text:
        start = text.index(heading)
        nxt = text.find("\n## ", start + len(heading))
        text = text[:start] + block + ("" if nxt < 0 else "\n" + text[nxt + 1 :])
    else:
        text = text.rstrip() + "\n\n" + block
    path.write_text(text)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
