"""`@app.cls` containers against raw Ray actors and raw Ray Serve, in one process on one Ray.

1. A method call's round trip (`Echo().ping.remote(1)`) vs a raw actor call and vs a raw Serve
   `DeploymentHandle` call to a deployment of the same shape.
2. `.map` over 10,000 inputs on a class with two containers vs a raw `ActorPool` of two actors
   (one call per input, as `ActorPool.map` does).
3. Batched throughput: 64 concurrent callers of a `@modal.batched(max_batch_size=8, wait_ms=10)`
   method vs a raw `@serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)` deployment with
   `max_ongoing_requests=64`.
4. `.map` of 1,000 inputs over a `@modal.batched(max_batch_size=32)` method vs a raw
   `@serve.batch(max_batch_size=32)` deployment fed by 64 concurrent handle calls.
5. `.map` of 1,000 I/O-bound inputs (50 ms each) over a `@modal.concurrent(max_inputs=16)`
   function vs a raw deployment with `max_ongoing_requests=16` fed by 16 concurrent handle calls.

Ray runs with the product's defaults here (token authentication on, as `modal run` has it).

Run: `.venv/bin/python bench/bench_classes.py [--quick] [--only KEY ...] [--no-save]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import common
from common import Row, Section, fmt_ms, fmt_rate, log

SERVE_TARGET = 1.3  # within 1.3x of raw Serve for the same work


def bench_method_call(samples: int) -> Section:
    import ray
    from class_workloads import Echo, RawActor, RawEcho
    from ray import serve

    echo = Echo()
    actor = RawActor.remote()
    handle = serve.run(RawEcho.bind(), name="raw-echo", route_prefix=None)
    assert echo.ping.remote(3) == 3
    assert ray.get(actor.ping.remote(3)) == 3
    assert handle.remote(3).result() == 3
    lat = common.interleaved_latency(
        {
            "modal": lambda: echo.ping.remote(1),
            "actor": lambda: ray.get(actor.ping.remote(1)),
            "serve": lambda: handle.remote(1).result(),
        },
        samples=samples,
        rounds=10,
        warmup=100,
    )
    ours, act, srv = lat["modal"], lat["actor"], lat["serve"]
    section = Section(
        key="class_call",
        title="`@app.cls` method round trip",
        description=(
            "`Echo().ping.remote(1)` (a class with `@modal.concurrent(max_inputs=64)`, one warm"
            " container) against `ray.get(actor.ping.remote(1))` on a raw actor and"
            " `handle.remote(1).result()` on a raw Serve deployment with"
            f" `max_ongoing_requests=64`; {ours.n} sequential samples per side, 10 alternating"
            " rounds."
        ),
    )
    r_serve = ours.median_s / srv.median_s
    r_actor = ours.median_s / act.median_s
    section.rows += [
        Row(
            what="method call median vs raw Serve handle",
            metric="latency",
            unit="ms",
            ours=fmt_ms(ours.median_s),
            raw=fmt_ms(srv.median_s),
            ratio=r_serve,
            ratio_label=f"{r_serve:.2f}x raw Serve",
            target="<= 1.3x raw Serve",
            passed=r_serve <= SERVE_TARGET,
        ),
        Row(
            what="method call median vs raw actor call",
            metric="latency",
            unit="ms",
            ours=fmt_ms(ours.median_s),
            raw=fmt_ms(act.median_s),
            ratio=r_actor,
            ratio_label=f"{r_actor:.2f}x raw actor",
        ),
        Row(
            what="method call p99 vs raw Serve handle",
            metric="latency",
            unit="ms",
            ours=fmt_ms(ours.p99_s),
            raw=fmt_ms(srv.p99_s),
            ratio=ours.p99_s / srv.p99_s,
            ratio_label=f"{ours.p99_s / srv.p99_s:.2f}x raw Serve",
        ),
    ]
    serve.delete("raw-echo")
    return section


def bench_class_map(n: int, repeats: int) -> Section:
    import ray
    from class_workloads import Pool2, RawActor
    from ray.util import ActorPool

    pool2 = Pool2()
    actors = [RawActor.remote() for _ in range(2)]
    raw_pool = ActorPool(actors)
    values = list(range(n))

    def ours() -> None:
        assert list(pool2.ping.map(values)) == values

    def raw() -> None:
        assert list(raw_pool.map(lambda a, v: a.ping.remote(v), values)) == values

    ray.get([a.ping.remote(0) for a in actors])
    walls = common.interleaved_runs({"modal": ours, "raw": raw}, repeats=repeats)
    r_ours = n / statistics.median(walls["modal"])
    r_raw = n / statistics.median(walls["raw"])
    section = Section(
        key="class_map",
        title="`.map` on a class vs a raw actor pool",
        description=(
            f"`list(Pool2().ping.map(range({n})))` on a class with two warm containers against"
            " `ray.util.ActorPool` over two raw actors (`pool.map`, one actor call per input)."
            f" Median of {repeats} whole runs per side, alternated."
        ),
    )
    section.rows.append(
        Row(
            what=f"`.map` {n:,} inputs on 2 containers vs raw ActorPool of 2",
            metric="throughput",
            unit="inputs/s",
            ours=fmt_rate(r_ours),
            raw=fmt_rate(r_raw),
            ratio=r_ours / r_raw,
            ratio_label=f"{r_ours / r_raw:.2f}x raw",
        )
    )
    return section


async def _callers(call, n_callers: int, per_caller: int) -> float:  # type: ignore[no-untyped-def]
    async def one(k: int) -> None:
        for i in range(per_caller):
            x = k * per_caller + i
            assert await call(x) == 2 * x

    t0 = time.perf_counter()
    await asyncio.gather(*(one(k) for k in range(n_callers)))
    return time.perf_counter() - t0


def bench_batched(n_callers: int, per_caller: int, repeats: int) -> Section:
    from class_workloads import Batched, RawBatched
    from ray import serve

    batched = Batched()
    handle = serve.run(RawBatched.bind(), name="raw-batched", route_prefix=None)
    total = n_callers * per_caller

    async def ours(x: int) -> int:
        return await batched.double.remote.aio(x)  # type: ignore[no-any-return]

    async def raw(x: int) -> int:
        return await handle.remote(x)  # type: ignore[no-any-return]

    walls: dict[str, list[float]] = {"modal": [], "raw": []}
    for fn in (ours, raw):  # warmup
        asyncio.run(_callers(fn, 8, 4))
    for r in range(repeats):
        order = [("modal", ours), ("raw", raw)] if r % 2 == 0 else [("raw", raw), ("modal", ours)]
        for name, fn in order:
            walls[name].append(asyncio.run(_callers(fn, n_callers, per_caller)))
    r_ours = total / statistics.median(walls["modal"])
    r_raw = total / statistics.median(walls["raw"])
    serve.delete("raw-batched")
    section = Section(
        key="class_batched",
        title="Batched throughput vs raw `@serve.batch`",
        description=(
            f"{n_callers} concurrent async callers, {per_caller} calls each, to a"
            " `@modal.batched(max_batch_size=8, wait_ms=10)` method (one container) against a"
            " raw deployment with `@serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)`"
            f" and `max_ongoing_requests=64`. Median of {repeats} runs per side, alternated."
        ),
    )
    ratio = r_ours / r_raw
    section.rows.append(
        Row(
            what=f"batched calls, {n_callers} callers",
            metric="throughput",
            unit="calls/s",
            ours=fmt_rate(r_ours, "calls/s"),
            raw=fmt_rate(r_raw, "calls/s"),
            ratio=ratio,
            ratio_label=f"{ratio:.2f}x raw Serve",
            target=">= 1/1.3x raw Serve",
            passed=ratio >= 1 / SERVE_TARGET,
        )
    )
    return section


async def _feed(
    call: Callable[[int], Awaitable[Any]], values: list[int], n_callers: int
) -> list[Any]:
    """`n_callers` concurrent callers share the inputs, each awaiting one call at a time."""
    out: list[Any] = [None] * len(values)
    indices = iter(range(len(values)))

    async def caller() -> None:
        for i in indices:
            out[i] = await call(values[i])

    await asyncio.gather(*(caller() for _ in range(n_callers)))
    return out


def bench_map_batched(n: int, repeats: int) -> Section:
    from class_workloads import BatchedModel, RawBatchedModel
    from ray import serve

    model = BatchedModel()
    handle = serve.run(RawBatchedModel.bind(), name="raw-batched-model", route_prefix=None)
    values = list(range(n))
    expected = [2 * v for v in values]
    callers = 64  # what `.map` keeps in flight for one container: two batches of 32
    sizes: dict[str, list[float]] = {"modal": [], "raw": []}

    def check(name: str, out: list[tuple[int, int]]) -> None:
        assert [o[0] for o in out] == expected
        sizes[name].append(statistics.fmean(o[1] for o in out))

    def ours() -> None:
        check("modal", list(model.predict.map(values)))

    def raw() -> None:
        check("raw", asyncio.run(_feed(handle.remote, values, callers)))

    walls = common.interleaved_runs({"modal": ours, "raw": raw}, repeats=repeats)
    serve.delete("raw-batched-model")
    r_ours = n / statistics.median(walls["modal"])
    r_raw = n / statistics.median(walls["raw"])
    ratio = r_ours / r_raw
    section = Section(
        key="class_map_batched",
        title="`.map` over a batched method vs raw `@serve.batch`",
        description=(
            f"`list(BatchedModel().predict.map(range({n})))` on a class with one warm container"
            " and `@modal.batched(max_batch_size=32, wait_ms=10)` against a raw deployment with"
            " `@serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)` and"
            f" `max_ongoing_requests=64`, fed by {callers} concurrent `handle.remote` callers."
            f" Median of {repeats} whole runs per side, alternated; token authentication on."
        ),
    )
    section.rows.append(
        Row(
            what=f"`.map` {n:,} inputs over `@batched(max_batch_size=32)` vs raw",
            metric="throughput",
            unit="inputs/s",
            ours=fmt_rate(r_ours),
            raw=fmt_rate(r_raw),
            ratio=ratio,
            ratio_label=f"{ratio:.2f}x raw Serve",
            target=">= 0.8x raw Serve",
            passed=ratio >= 0.8,
        )
    )
    section.notes.append(
        "mean batch size seen by an input (median over runs): modal-ray"
        f" {statistics.median(sizes['modal']):.1f}, raw {statistics.median(sizes['raw']):.1f}"
    )
    return section


def bench_map_concurrent(n: int, repeats: int) -> Section:
    from class_workloads import IO_SECONDS, RawIOBound, io_bound
    from ray import serve

    handle = serve.run(RawIOBound.bind(), name="raw-io-bound", route_prefix=None)
    values = list(range(n))
    slots = 16

    def ours() -> None:
        assert list(io_bound.map(values)) == values

    def raw() -> None:
        assert asyncio.run(_feed(handle.remote, values, slots)) == values

    walls = common.interleaved_runs({"modal": ours, "raw": raw}, repeats=repeats)
    serve.delete("raw-io-bound")
    r_ours = n / statistics.median(walls["modal"])
    r_raw = n / statistics.median(walls["raw"])
    ratio = r_ours / r_raw
    ideal = slots / IO_SECONDS
    section = Section(
        key="map_concurrent",
        title="`.map` over a concurrent function vs raw Serve",
        description=(
            f"`list(io_bound.map(range({n})))` on a function with"
            " `@modal.concurrent(max_inputs=16)` and one warm container"
            " (`min_containers=1, max_containers=1`), each input"
            f" `await asyncio.sleep({IO_SECONDS})`,"
            " against a raw deployment with `max_ongoing_requests=16` running the same body, fed by"
            f" {slots} concurrent `handle.remote` callers. Median of {repeats} whole runs per side,"
            " alternated; token authentication on."
        ),
    )
    section.rows.append(
        Row(
            what=f"`.map` {n:,} I/O-bound inputs, `max_inputs=16` vs raw",
            metric="throughput",
            unit="inputs/s",
            ours=fmt_rate(r_ours),
            raw=fmt_rate(r_raw),
            ratio=ratio,
            ratio_label=f"{ratio:.2f}x raw Serve",
        )
    )
    section.notes.append(
        f"ideal for 16 slots of {IO_SECONDS * 1e3:.0f} ms: {ideal:,.0f} inputs/s; modal-ray"
        f" reaches {r_ours / ideal:.0%} of it, raw Serve {r_raw / ideal:.0%}"
    )
    return section


def start_ray() -> None:
    """One local Ray for both sides, with the product's defaults (`common.start_ray`)."""
    common.start_ray()
    log(f"RAY_AUTH_MODE={os.environ['RAY_AUTH_MODE']}")


SECTIONS = ("class_call", "class_map", "class_batched", "class_map_batched", "map_concurrent")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples (smoke run)")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument(
        "--no-save", action="store_true", help="print the rows; leave bench/results.json alone"
    )
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run these sections only")
    args = parser.parse_args(argv)
    quick = args.quick
    selected = set(args.only or SECTIONS)

    common.quiet_env()  # the product's defaults (token authentication on), before Ray loads
    import ray

    start_ray()
    from class_workloads import app

    runs: dict[str, Callable[[], Section]] = {
        "class_call": lambda: bench_method_call(300 if quick else 2000),
        "class_map": lambda: bench_class_map(10_000, 2 if quick else 5),
        "class_batched": lambda: bench_batched(64, 5 if quick else 20, 2 if quick else 5),
        "class_map_batched": lambda: bench_map_batched(1000, 2 if quick else 5),
        "map_concurrent": lambda: bench_map_concurrent(1000, 2 if quick else 5),
    }
    try:
        with app.run():
            for name in SECTIONS:
                if name not in selected:
                    continue
                t0 = time.perf_counter()
                section = runs[name]()
                section.elapsed_s = time.perf_counter() - t0
                if args.no_save:
                    print("\n".join(common._table(section.rows)))
                    for note in section.notes:
                        print(f"- {note}")
                else:
                    common.save_section(section)
                log(f"{name}: {[r.ratio_label for r in section.rows]}")
    finally:
        ray.shutdown()
    if not args.no_docs and not args.no_save:
        common.render_docs()
    return 0


if __name__ == "__main__":
    sys.exit(main())
