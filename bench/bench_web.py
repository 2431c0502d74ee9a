"""Web endpoints against raw Ray Serve, in one process on one Ray, with the same client.

The same FastAPI app (`GET /` -> a small JSON object) is served three ways:
- raw: a Serve deployment with `serve.ingress`, `max_ongoing_requests=64`, through Serve's proxy;
- modal-ray: `@modal.asgi_app` with `@modal.concurrent(max_inputs=64)`, through its own origin
  (the gateway, then Serve's proxy);
- modal-ray direct: the same endpoint's Serve route, skipping the gateway (what the gateway
  costs).
Each is driven by 32 concurrent keep-alive connections (httpx, one event loop) for a fixed
time, in interleaved rounds. Targets (the web issue): throughput at least 0.8x raw Serve's,
p50 latency at most 1.25x.

Run: `.venv/bin/python bench/bench_web.py [--quick] [--seconds 8] [--rounds 2] [--no-save]
[--no-docs]`. It stores the `web` section of `bench/results.json` (unless `--no-save`) and
rewrites docs/benchmarks.md from that file (unless `--no-docs`).
"""

import argparse
import asyncio
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common
from common import Row, Section

common.quiet_env()

import modal  # noqa: E402

app = modal.App("bench-web")


def make_fastapi():  # type: ignore[no-untyped-def]
    from fastapi import FastAPI

    web = FastAPI()

    @web.get("/")
    def root():  # type: ignore[no-untyped-def]
        return {"ok": 1}

    return web


@app.function(cpu=0.125, min_containers=1, max_containers=1)
@modal.concurrent(max_inputs=64)
@modal.asgi_app()
def endpoint():  # type: ignore[no-untyped-def]
    return make_fastapi()


async def drive(url: str, seconds: float, connections: int = 32) -> tuple[float, list[float]]:
    import httpx

    latencies: list[float] = []
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        for _ in range(connections):  # warm the connections
            (await client.get(url)).raise_for_status()
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < stop:
                t = time.perf_counter()
                r = await client.get(url)
                latencies.append(time.perf_counter() - t)
                r.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - start
    return len(latencies) / elapsed, latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="shorter rounds (smoke run)")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-save", action="store_true", help="print only; write nothing")
    parser.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    args = parser.parse_args()
    seconds = 3.0 if args.quick else args.seconds
    started = time.perf_counter()

    import ray
    from ray import serve
    from ray.serve.context import _get_global_client

    ray.init(**common.RAY_INIT_KWARGS)
    with app.run():
        ours = endpoint.get_web_url()
        port = _get_global_client().http_config.port
        name = next(n for n in serve.status().applications if "endpoint" in n)
        direct = f"http://127.0.0.1:{port}/{name}/"

        @serve.deployment(
            max_ongoing_requests=64,
            ray_actor_options={"num_cpus": 0.125},
            logging_config={"enable_access_log": False, "log_level": "WARNING"},
        )
        @serve.ingress(make_fastapi())
        class Raw:
            pass

        serve.run(Raw.bind(), name="raw-web", route_prefix="/raw-web")
        raw = f"http://127.0.0.1:{port}/raw-web/"
        sides = {"raw Serve": raw, "modal-ray": ours + "/", "modal-ray direct": direct}
        results: dict[str, list[tuple[float, list[float]]]] = {k: [] for k in sides}
        for _ in range(args.rounds):
            for label, url in sides.items():
                results[label].append(asyncio.run(drive(url, seconds)))
        serve.delete("raw-web")
    summary: dict[str, tuple[float, float, float]] = {}
    for label, runs in results.items():
        rate = statistics.fmean(r for r, _ in runs)
        lat = [x for _, lats in runs for x in lats]
        summary[label] = (rate, statistics.median(lat), common.percentile(lat, 99))
    ray.shutdown()
    section = Section(
        key="web",
        title="Web endpoints vs raw Ray Serve",
        description=(
            "The same FastAPI app (`GET /` returning a small JSON object) as a raw Serve"
            " deployment (`serve.ingress`, `max_ongoing_requests=64`) through Serve's proxy,"
            " and as `@modal.asgi_app` with `@modal.concurrent(max_inputs=64)` through its own"
            " origin (the gateway, then Serve's proxy); 32 concurrent keep-alive connections"
            f" (httpx, one event loop) for {seconds:.0f} s per side, {args.rounds} interleaved"
            " rounds. 'direct' is the endpoint's Serve route without the gateway."
        ),
    )
    raw_rate, raw_p50, raw_p99 = summary["raw Serve"]
    for label in ("modal-ray", "modal-ray direct"):
        rate, p50, p99 = summary[label]
        gated = label == "modal-ray"
        section.rows.append(
            Row(
                what=f"{label}: requests/s (32 connections)",
                metric="throughput",
                unit="req/s",
                ours=f"{rate:,.0f} req/s",
                raw=f"{raw_rate:,.0f} req/s",
                ratio=rate / raw_rate,
                ratio_label=f"{rate / raw_rate:.2f}x raw Serve",
                target=">= 0.8x raw Serve" if gated else "",
                passed=(rate / raw_rate >= 0.8) if gated else None,
            )
        )
        section.rows.append(
            Row(
                what=f"{label}: p50 latency (32 connections)",
                metric="latency",
                unit="ms",
                ours=f"{p50 * 1e3:.1f} ms (p99 {p99 * 1e3:.1f} ms)",
                raw=f"{raw_p50 * 1e3:.1f} ms (p99 {raw_p99 * 1e3:.1f} ms)",
                ratio=p50 / raw_p50,
                ratio_label=f"{p50 / raw_p50:.2f}x raw Serve",
                target="<= 1.25x raw Serve" if gated else "",
                passed=(p50 / raw_p50 <= 1.25) if gated else None,
            )
        )
    section.elapsed_s = time.perf_counter() - started
    for row in section.rows:
        print(f"{row.what}: ours {row.ours} | raw {row.raw} | {row.ratio_label} {row.target}")
    if args.no_save:
        return
    common.save_section(section)
    if not args.no_docs:
        common.render_docs()


if __name__ == "__main__":
    main()
