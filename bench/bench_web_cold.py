"""Cold start of a web endpoint scaled to zero, against raw Ray Serve's, in one process on one Ray.

The same FastAPI app (`GET /` -> a small JSON object) is served two ways, both allowed to scale
to zero after the same idle time (`SCALEDOWN_S`):
- modal-ray: `@modal.asgi_app` with `min_containers=0, scaledown_window=SCALEDOWN_S`, through its
  own origin (the gateway, then Serve's proxy);
- raw: a Serve deployment with `serve.ingress` and `autoscaling_config` min_replicas=0, the same
  downscale delay, and the same upscale knobs modal-ray gives its pools (upscale delay 0.5 s,
  metrics every 0.5 s, 2 s look-back), through Serve's proxy.

Each round waits until a side has no replica left, then times its first request (the request
that brings a replica back) to the end of the response. Sides alternate round by round.

Run: `.venv/bin/python bench/bench_web_cold.py [--quick] [--rounds N] [--no-docs]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common
from common import Row, Section, fmt_s, log

common.quiet_env()

import modal  # noqa: E402

SCALEDOWN_S = 2
SECTION_TITLE = "Web endpoints: cold start from zero containers"
DESCRIPTION = (
    "Time of the first request to an endpoint scaled to zero (from sending it to the end of "
    "the response), modal-ray's `@modal.asgi_app` (min_containers=0, scaledown_window="
    f"{SCALEDOWN_S}) through its gateway against a raw Serve deployment (autoscaling "
    f"min_replicas=0, downscale delay {SCALEDOWN_S} s, modal-ray's upscale settings) through "
    "Serve's proxy; same FastAPI app, same Ray, sides alternated. Each round first waits "
    "until the side has no replica left."
)

app = modal.App("bench-web-cold")


def make_fastapi() -> Any:
    from fastapi import FastAPI

    web = FastAPI()

    @web.get("/")
    def root() -> dict[str, int]:
        return {"ok": 1}

    return web


@app.function(cpu=0.125, min_containers=0, scaledown_window=SCALEDOWN_S, max_containers=1)
@modal.concurrent(max_inputs=64)
@modal.asgi_app()
def cold_endpoint() -> Any:
    return make_fastapi()


def _replicas(app_name: str) -> int:
    """Replicas of a Serve application, in any state (0: scaled to zero)."""
    from ray import serve

    status = serve.status().applications.get(app_name)
    if status is None:
        return 0
    return sum(sum(d.replica_states.values()) for d in status.deployments.values())


def _wait_for_zero(app_name: str, deadline_s: float = 120.0) -> float:
    """Wait until `app_name` has no replica; the seconds waited."""
    t0 = time.perf_counter()
    while _replicas(app_name) > 0:
        if time.perf_counter() - t0 > deadline_s:
            raise TimeoutError(f"{app_name} did not scale to zero within {deadline_s:.0f} s")
        time.sleep(0.1)
    return time.perf_counter() - t0


def _first_request(url: str) -> float:
    import httpx

    t0 = time.perf_counter()
    r = httpx.get(url, timeout=120)
    elapsed = time.perf_counter() - t0
    r.raise_for_status()
    return elapsed


def bench(rounds: int) -> tuple[list[float], list[float], list[str]]:
    import ray
    from ray import serve
    from ray.serve.context import _get_global_client

    ours_times: list[float] = []
    raw_times: list[float] = []
    notes: list[str] = []
    with app.run():
        ours_url = cold_endpoint.get_web_url() + "/"
        ours_app = next(n for n in serve.status().applications if "cold-endpoint" in n)
        port = _get_global_client().http_config.port

        @serve.deployment(
            max_ongoing_requests=64,
            ray_actor_options={"num_cpus": 0.125},
            logging_config={"enable_access_log": False, "log_level": "WARNING"},
            autoscaling_config={
                "min_replicas": 0,
                "initial_replicas": 1,
                "max_replicas": 1,
                "target_ongoing_requests": 64,
                "upscale_delay_s": 0.5,
                "downscale_delay_s": SCALEDOWN_S,
                "downscale_to_zero_delay_s": SCALEDOWN_S,
                "metrics_interval_s": 0.5,
                "look_back_period_s": 2.0,
            },
        )
        @serve.ingress(make_fastapi())
        class RawCold:
            pass

        serve.run(RawCold.bind(), name="raw-web-cold", route_prefix="/raw-web-cold")
        raw_url = f"http://127.0.0.1:{port}/raw-web-cold/"
        sides: dict[str, tuple[str, str, list[float]]] = {
            "modal-ray": (ours_app, ours_url, ours_times),
            "raw Serve": ("raw-web-cold", raw_url, raw_times),
        }
        waits: dict[str, list[float]] = {k: [] for k in sides}
        try:
            for i in range(rounds):
                order = list(sides) if i % 2 == 0 else list(reversed(sides))
                for label in order:
                    name, url, out = sides[label]
                    waits[label].append(_wait_for_zero(name))
                    out.append(_first_request(url))
                    log(f"round {i + 1} {label}: first request {out[-1]:.2f} s")
        finally:
            serve.delete("raw-web-cold")
        for label, w in waits.items():
            notes.append(
                f"{label}: waited {statistics.median(w):.1f} s (median) at the start of a round"
                f" for zero replicas (scaledown window {SCALEDOWN_S} s; 0 s: already at zero"
                " while the other side ran)"
            )
    notes.append(
        f"{rounds} cold starts per side; the first request of each is timed alone (no other"
        f" traffic). Ray {ray.__version__}; machine load is shown at the top of this file."
    )
    return ours_times, raw_times, notes


def _row(ours: list[float], raw: list[float]) -> Row:
    o, r = statistics.median(ours), statistics.median(raw)
    ratio = o / r
    return Row(
        what="first request to an endpoint at zero containers",
        metric="latency",
        unit="s",
        ours=f"{fmt_s(o)} (min {fmt_s(min(ours))}, max {fmt_s(max(ours))})",
        raw=f"{fmt_s(r)} (min {fmt_s(min(raw))}, max {fmt_s(max(raw))})",
        ratio=ratio,
        ratio_label=f"{ratio:.2f}x latency",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (smoke run)")
    parser.add_argument("--rounds", type=int, default=0, help="cold starts per side")
    parser.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 6)

    own_state = None
    if not os.environ.get("MODAL_RAY_STATE"):  # a private state store, removed at the end
        own_state = tempfile.mkdtemp(prefix="modal-ray-bench-")
        os.environ["MODAL_RAY_STATE"] = own_state
    import ray

    common.start_ray()
    t0 = time.perf_counter()
    try:
        ours, raw, notes = bench(rounds)
    finally:
        ray.shutdown()
        if own_state is not None:
            shutil.rmtree(own_state, ignore_errors=True)
    section = Section(
        key="web_cold_start",
        title=SECTION_TITLE,
        description=DESCRIPTION,
        rows=[_row(ours, raw)],
        notes=notes,
        elapsed_s=time.perf_counter() - t0,
    )
    common.save_section(section)
    for r in section.rows:
        log(f"{r.what}: {r.ours} vs {r.raw} ({r.ratio_label})")
    for note in section.notes:
        log(note)
    if not args.no_docs:
        common.write_docs_section(section, "bench_web_cold.py")
        log(f"wrote the '{SECTION_TITLE}' section of {common.DOCS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
