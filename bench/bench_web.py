"""Web endpoints against raw Ray Serve, in one process on one Ray, with the same client.

The same FastAPI app (`GET /` -> a small JSON object) is served three ways:
- raw: a Serve deployment with `serve.ingress`, `max_ongoing_requests=64`, through Serve's proxy;
- modal-ray: `@modal.asgi_app` with `@modal.concurrent(max_inputs=64)`, through its own origin
  (the gateway, then Serve's proxy);
- modal-ray direct: the same endpoint's Serve route, skipping the gateway (what the gateway
  costs).
Each is driven by 32 concurrent keep-alive connections (httpx, one event loop) for a fixed
time, in interleaved rounds. Prints requests/s and median/p99 latency per side.

Run: `.venv/bin/python bench/bench_web.py [--seconds 8] [--rounds 2]`.
"""

import argparse
import asyncio
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common

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
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

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
                results[label].append(asyncio.run(drive(url, args.seconds)))
        serve.delete("raw-web")
    print(f"{'side':<18} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    base = None
    for label, runs in results.items():
        rate = statistics.fmean(r for r, _ in runs)
        lat = [x for _, lats in runs for x in lats]
        p50 = statistics.median(lat) * 1000
        p99 = common.percentile(lat, 99) * 1000
        base = base or (rate, p50)
        print(
            f"{label:<18} {rate:8.1f} {p50:8.1f} {p99:8.1f}"
            f"   ({rate / base[0]:.2f}x req/s, {p50 / base[1]:.2f}x p50 of raw)"
        )
    ray.shutdown()


if __name__ == "__main__":
    main()
