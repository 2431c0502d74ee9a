"""`modal.Dict` and `modal.Queue` against raw Ray doing the same work, in one process on one Ray.

Ray runs with the product's defaults: token authentication on, as modal-ray's embedded Ray.

1. Dict put / get latency vs a raw named detached actor holding a Python dict (a plain actor,
   and an async one), small and 100 KB values, and with `MODAL_RAY_STORE_SYNC=full`; item-by-item
   throughput (the issue's "get/put ops/s"), and 8 callers at once.
2. Queue throughput vs `ray.util.queue.Queue`: item by item (put then get), batched
   (`put_many`/`get_many` vs `put_nowait_batch`/`get_nowait_batch`), and a producer task feeding
   a consumer in the driver.
3. The storage cost alone, without Ray: one put through the server in-process, NORMAL vs FULL,
   and what group commit does for 8 threads writing at once.

Targets (issue 9): Dict within 1.3x of the raw actor dict; Queue at least as fast as
`ray.util.queue.Queue`; both durable (the raw sides lose everything with their actor).

Run: `.venv/bin/python bench/bench_dict_queue.py [--quick] [--repeats N] [--no-docs]`. Results go
to `bench/results.json` (key `dict_queue`) and, unless `--no-docs`, to the `## Dict and Queue`
section at the end of docs/benchmarks.md (replaced in place; the rest of the file is untouched).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import common
from common import Latency, Row, Section, fmt_ms, fmt_rate, log

SECTION_TITLE = "Dict and Queue"
DICT_MAX_LATENCY_RATIO = 1.3  # issue 9: Dict within 1.3x of the raw actor dict
QUEUE_MIN_THROUGHPUT_RATIO = 1.0  # issue 9: Queue at least as fast as ray.util.queue


def _lat_row(
    what: str, ours: Latency, raw: Latency, note: str = "", max_ratio: float | None = None
) -> Row:
    ratio = ours.median_s / raw.median_s
    return Row(
        what=what,
        metric="latency",
        unit="ms",
        ours=f"{fmt_ms(ours.median_s)} (p99 {fmt_ms(ours.p99_s)})",
        raw=f"{fmt_ms(raw.median_s)} (p99 {fmt_ms(raw.p99_s)})",
        ratio=ratio,
        ratio_label=f"{ratio:.2f}x latency",
        target="" if max_ratio is None else f"<= {max_ratio:.2f}x",
        passed=None if max_ratio is None else ratio <= max_ratio,
        note=note,
    )


def _rate_row(
    what: str, ours: float, raw: float, unit: str, note: str = "", min_ratio: float | None = None
) -> Row:
    ratio = ours / raw
    return Row(
        what=what,
        metric="throughput",
        unit=unit,
        ours=fmt_rate(ours, unit),
        raw=fmt_rate(raw, unit),
        ratio=ratio,
        ratio_label=f"{ratio:.2f}x throughput",
        target="" if min_ratio is None else f">= {min_ratio:.2f}x",
        passed=None if min_ratio is None else ratio >= min_ratio,
        note=note,
    )


def _callers_rate(fn: Callable[[int, int], None], callers: int, per_caller: int) -> float:
    """Operations per second with `callers` threads each calling `fn(caller, i)` in turn."""
    with ThreadPoolExecutor(callers) as pool:
        t0 = time.perf_counter()
        list(pool.map(lambda c: [fn(c, i) for i in range(per_caller)], range(callers)))
        return callers * per_caller / (time.perf_counter() - t0)


def bench_dict(samples: int, n_items: int, repeats: int) -> tuple[list[Row], list[str]]:
    import ray

    import modal

    @ray.remote(num_cpus=0)
    class RawDict:
        def __init__(self) -> None:
            self.d: dict[Any, Any] = {}

        def put(self, k: Any, v: Any) -> None:
            self.d[k] = v

        def get(self, k: Any) -> Any:
            return self.d.get(k)

    @ray.remote(num_cpus=0, max_concurrency=1000)
    class RawAsyncDict:
        def __init__(self) -> None:
            self.d: dict[Any, Any] = {}

        async def put(self, k: Any, v: Any) -> None:
            self.d[k] = v

        async def get(self, k: Any) -> Any:
            return self.d.get(k)

    ns = "modal-main"
    raw = RawDict.options(name="bench-raw-dict", lifetime="detached", namespace=ns).remote()
    raw_async = RawAsyncDict.options(
        name="bench-raw-async-dict", lifetime="detached", namespace=ns
    ).remote()
    d = modal.Dict.from_name("bench-dict", create_if_missing=True).hydrate()
    os.environ["MODAL_RAY_STORE_SYNC"] = "full"  # read when the next Dict's actor is created
    d_full = modal.Dict.from_name("bench-dict-full", create_if_missing=True).hydrate()
    os.environ.pop("MODAL_RAY_STORE_SYNC")
    small = "v" * 100
    big = b"x" * 100_000
    d["k"] = small
    ray.get(raw.put.remote("k", small))
    ray.get(raw_async.put.remote("k", small))
    assert d["k"] == small
    assert ray.get(raw.get.remote("k")) == small

    kw = {"samples": samples, "rounds": 10, "warmup": 100}
    put = common.interleaved_latency(
        {
            "modal": lambda: d.put("k", small),
            "raw": lambda: ray.get(raw.put.remote("k", small)),
            "raw_async": lambda: ray.get(raw_async.put.remote("k", small)),
            "modal_full": lambda: d_full.put("k", small),
        },
        **kw,
    )
    log(f"dict put: { {k: round(v.median_s * 1e3, 3) for k, v in put.items()} }")
    get = common.interleaved_latency(
        {
            "modal": lambda: d.get("k"),
            "raw": lambda: ray.get(raw.get.remote("k")),
            "raw_async": lambda: ray.get(raw_async.get.remote("k")),
        },
        **kw,
    )
    log(f"dict get: { {k: round(v.median_s * 1e3, 3) for k, v in get.items()} }")
    put_big = common.interleaved_latency(
        {
            "modal": lambda: d.put("big", big),
            "raw": lambda: ray.get(raw.put.remote("big", big)),
        },
        samples=max(100, samples // 4),
        rounds=5,
        warmup=20,
    )

    def ours_items() -> None:
        for i in range(n_items):
            d.put(i, small)
        for i in range(n_items):
            d.get(i)

    def raw_items() -> None:
        for i in range(n_items):
            ray.get(raw.put.remote(i, small))
        for i in range(n_items):
            ray.get(raw.get.remote(i))

    runs = common.interleaved_runs({"modal": ours_items, "raw": raw_items}, repeats=repeats)
    items_rate = {k: 2 * n_items / statistics.median(v) for k, v in runs.items()}
    log(f"dict put/get item by item: {items_rate}")

    callers, per_caller = 8, max(50, n_items // 8)
    concurrent: dict[str, list[float]] = {"modal": [], "raw": [], "modal_full": []}
    for _ in range(repeats):
        concurrent["modal"].append(_callers_rate(lambda c, i: d.put((c, i), small), 8, per_caller))
        concurrent["raw"].append(
            _callers_rate(lambda c, i: ray.get(raw.put.remote((c, i), small)), 8, per_caller)
        )
        concurrent["modal_full"].append(
            _callers_rate(lambda c, i: d_full.put((c, i), small), 8, per_caller)
        )
    par = {k: statistics.median(v) for k, v in concurrent.items()}
    log(f"dict put, {callers} callers: {par}")

    target = DICT_MAX_LATENCY_RATIO
    rows = [
        _lat_row(
            "Dict `put` (100 B value) vs raw actor holding a dict",
            put["modal"],
            put["raw"],
            max_ratio=target,
        ),
        _lat_row(
            "Dict `get` (100 B value) vs raw actor holding a dict",
            get["modal"],
            get["raw"],
            max_ratio=target,
        ),
        _rate_row(
            f"Dict item by item: `put` x {n_items:,} then `get` x {n_items:,} vs raw actor",
            items_rate["modal"],
            items_rate["raw"],
            "ops/s",
            min_ratio=1 / target,
        ),
        _lat_row(
            "Dict `put` (100 KB value) vs raw actor holding a dict",
            put_big["modal"],
            put_big["raw"],
        ),
        _rate_row(
            f"Dict `put` from {callers} threads at once vs raw actor",
            par["modal"],
            par["raw"],
            "ops/s",
        ),
        _lat_row(
            "Dict `put` vs raw **async** actor (no persistence)",
            put["modal"],
            put["raw_async"],
        ),
        _lat_row("Dict `get` vs raw **async** actor", get["modal"], get["raw_async"]),
        _lat_row(
            "Dict `put` with `MODAL_RAY_STORE_SYNC=full` (fsync per commit) vs raw actor",
            put["modal_full"],
            put["raw"],
        ),
        _rate_row(
            f"Dict `put` with `MODAL_RAY_STORE_SYNC=full` from {callers} threads vs raw actor",
            par["modal_full"],
            par["raw"],
            "ops/s",
            note="group commit: concurrent operations share one fsync",
        ),
    ]
    for name in ("bench-dict", "bench-dict-full"):
        modal.Dict.objects.delete(name)
    ray.kill(raw)
    ray.kill(raw_async)
    notes = [
        f"raw async actor alone: put {fmt_ms(put['raw_async'].median_s)}, get"
        f" {fmt_ms(get['raw_async'].median_s)} (median)",
        f"Dict runs: latency over {samples:,} calls per side in alternated rounds; item by item"
        f" and {callers} threads: median of {repeats} alternated runs",
    ]
    return rows, notes


def bench_queue(n_items: int, repeats: int) -> tuple[list[Row], list[str]]:
    import ray
    from ray.util.queue import Queue as RayQueue

    import modal

    q = modal.Queue.from_name("bench-queue", create_if_missing=True).hydrate()
    rq = RayQueue(actor_options={"num_cpus": 0})
    q.put(0)
    rq.put(0)
    assert q.get() == 0
    assert rq.get() == 0

    def ours_single() -> None:
        for i in range(n_items):
            q.put(i)
        for _ in range(n_items):
            q.get()

    def raw_single() -> None:
        for i in range(n_items):
            rq.put(i)
        for _ in range(n_items):
            rq.get()

    batch, n_batched = 100, max(2_000, n_items * 10 // 2_000 * 2_000)

    # Rounds of 2,000 items in, then out: a partition holds at most 5,000.
    per_round = 2_000

    def ours_batched() -> None:
        for base in range(0, n_batched, per_round):
            for start in range(base, base + per_round, batch):
                q.put_many(list(range(start, start + batch)), timeout=60)
            got = 0
            while got < per_round:
                got += len(q.get_many(batch, timeout=60))

    def raw_batched() -> None:
        for base in range(0, n_batched, per_round):
            for start in range(base, base + per_round, batch):
                rq.put_nowait_batch(list(range(start, start + batch)))
            got = 0
            while got < per_round:
                got += len(rq.get_nowait_batch(batch))

    @ray.remote(num_cpus=0)
    def produce_modal(queue: Any, n: int) -> None:
        for i in range(n):
            queue.put(i)

    @ray.remote(num_cpus=0)
    def produce_raw(queue: Any, n: int) -> None:
        for i in range(n):
            queue.put(i)

    def ours_pipeline() -> None:
        ref = produce_modal.remote(q, n_items)
        for _ in range(n_items):
            q.get(timeout=60)
        ray.get(ref)

    def raw_pipeline() -> None:
        ref = produce_raw.remote(rq, n_items)
        for _ in range(n_items):
            rq.get(timeout=60)
        ray.get(ref)

    rows: list[Row] = []
    for what, unit_n, ours_fn, raw_fn in (
        (
            "Queue item by item: `put` x N then `get` x N vs `ray.util.queue.Queue`",
            2 * n_items,
            ours_single,
            raw_single,
        ),
        (
            "Queue batched: `put_many`/`get_many` of 100 vs `put_nowait_batch`/`get_nowait_batch`",
            2 * n_batched,
            ours_batched,
            raw_batched,
        ),
        (
            "Queue pipeline: a producer task `put`s, the driver `get`s (blocking)",
            n_items,
            ours_pipeline,
            raw_pipeline,
        ),
    ):
        runs = common.interleaved_runs({"modal": ours_fn, "raw": raw_fn}, repeats=repeats)
        ours_rate = unit_n / statistics.median(runs["modal"])
        raw_rate = unit_n / statistics.median(runs["raw"])
        log(f"{what}: {ours_rate:,.0f} vs {raw_rate:,.0f} ops/s")
        rows.append(
            _rate_row(what, ours_rate, raw_rate, "ops/s", min_ratio=QUEUE_MIN_THROUGHPUT_RATIO)
        )
    modal.Queue.objects.delete("bench-queue")
    rq.shutdown()
    notes = [
        f"queue runs: N = {n_items:,} items item by item and in the pipeline, {n_batched:,} items"
        f" batched; ops/s counts puts and gets separately (pipeline: items delivered per second);"
        f" median of {repeats} alternated runs"
    ]
    return rows, notes


def bench_commit_cost(samples: int) -> list[str]:
    """The storage part alone, in-process (no Ray): one put through a server, and 8 threads
    putting at once (group commit), with `synchronous` NORMAL and FULL."""
    from modal_ray.storage import DictServer

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for sync in ("NORMAL", "FULL"):
            server = DictServer(Path(tmp) / f"{sync}.sqlite", sync=sync)
            server.open(True)
            times = []
            for i in range(samples):
                t0 = time.perf_counter()
                server.put(False, f"k{i}".encode(), b"v" * 100, False, "")
                times.append(time.perf_counter() - t0)
            lat = Latency.of(times)
            out.append(
                f"one 100 B put through the server in-process, `synchronous={sync}`:"
                f" {fmt_ms(lat.median_s)} median, {fmt_ms(lat.p99_s)} p99"
            )
            threads, per_thread = 8, max(25, samples // 8)
            before = server.db.commits

            def put(c: int, i: int, s: DictServer = server) -> None:
                s.put(False, f"t{c}-{i}".encode(), b"v" * 100, False, "")

            rate = _callers_rate(put, threads, per_thread)
            commits = server.db.commits - before
            out.append(
                f"{threads} threads putting at once, in-process, `synchronous={sync}`:"
                f" {rate:,.0f} puts/s, {threads * per_thread / max(1, commits):.1f} puts per"
                " commit (group commit)"
            )
    return out


DESCRIPTION = """\
Each Dict and Queue is one named detached actor hosting the object's storage server
(`modal_ray.storage`), which commits every acknowledged write to a SQLite file (WAL,
`synchronous=NORMAL`) before it replies, so `ray.kill`, a crash or a full Ray restart loses
nothing. A Dict's actor is a plain actor, like the raw one; a Queue's actor adds a thread group
for blocking waits. The raw baselines keep their data only in actor memory (a Python dict;
`ray.util.queue.Queue`'s `asyncio.Queue`) and lose it with the actor. The ratios below are
therefore the price of durability plus modal-ray's client (pickling of keys and values), measured
in the same process against the same Ray (token authentication on, the product's default), sides
alternated."""

DURABILITY_NOTES = [
    "Group commit: operations that arrive while a commit is in progress are committed together"
    " by one commit, and none is acknowledged before its commit. With `synchronous=NORMAL` a"
    " commit is a WAL append and an actor runs one operation at a time (faster than sharing"
    " commits between threads); with `MODAL_RAY_STORE_SYNC=full` (an fsync per commit) the actor"
    " runs up to 4 operations at once so that concurrent callers share fsyncs.",
    "Default `synchronous=NORMAL` (WAL): a committed write survives the actor being killed, the "
    "process crashing and Ray restarting, but the last commits may be lost if the machine loses "
    "power; `MODAL_RAY_STORE_SYNC=full` fsyncs every commit (rows above) to survive that too.",
    "Queue gets are one round trip and never poll: a blocking `get` waits inside the actor. A "
    "get records the items it took under its request id for 30 s, so a get retried after an "
    "actor restart returns the same items and a caller that gives up has them put back: nothing "
    "is lost or duplicated by a crash between commit and reply. A `put_many` is stored as one "
    "row (a chunk of values), so a batch costs one insert.",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples (smoke run)")
    parser.add_argument("--repeats", type=int, default=0, help="runs per queue benchmark side")
    parser.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 5)

    own_state = None
    if not os.environ.get("MODAL_RAY_STATE"):  # a private state store, removed at the end
        own_state = tempfile.mkdtemp(prefix="modal-ray-bench-")
        os.environ["MODAL_RAY_STATE"] = own_state
    common.quiet_env()  # the product's defaults (token authentication on), before Ray loads
    import ray

    common.start_ray()
    t0 = time.perf_counter()
    try:
        dict_rows, dict_notes = bench_dict(
            samples=300 if args.quick else 2000,
            n_items=300 if args.quick else 1000,
            repeats=repeats,
        )
        queue_rows, queue_notes = bench_queue(n_items=300 if args.quick else 1000, repeats=repeats)
    finally:
        ray.shutdown()
        if own_state is not None:
            shutil.rmtree(own_state, ignore_errors=True)
    commit_notes = bench_commit_cost(200 if args.quick else 1000)
    section = Section(
        key="dict_queue",
        title=SECTION_TITLE,
        description=DESCRIPTION,
        rows=dict_rows + queue_rows,
        notes=DURABILITY_NOTES + commit_notes + dict_notes + queue_notes,
        elapsed_s=time.perf_counter() - t0,
    )
    common.save_section(section)
    for r in section.rows:
        log(f"{r.what}: {r.ours} vs {r.raw} ({r.ratio_label})")
    for note in section.notes:
        log(note)
    if not args.no_docs:
        common.write_docs_section(section, "bench_dict_queue.py")
        log(f"wrote the '{SECTION_TITLE}' section of {common.DOCS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
