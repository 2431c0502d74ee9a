"""`@modal.experimental.clustered(size=2)` against the same placement group and actors by hand.

On a three-node `ray.cluster_utils.Cluster` (one machine, 2 logical CPUs per node), one process:

1. Call to all ranks started: from `f.remote(...)` until the last rank enters the function (each
   rank writes `time.time()` on entry), against raw Ray doing what a clustered call needs: a
   `STRICT_SPREAD` placement group of 2 bundles, `pg.ready()`, one actor per bundle, each
   actor's node address (the rendezvous information), then the method on every actor.
2. Whole call: until the caller has rank 0's value and the gang is gone (actors killed,
   placement group removed), both sides.

Sides alternate call by call. Run: `.venv/bin/python bench/bench_clustered.py [--quick]
[--no-save] [--no-docs]`. It stores the `clustered` section of `bench/results.json` (unless
`--no-save`) and rewrites docs/benchmarks.md from that file (unless `--no-docs`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import common
from common import Latency, Row, Section, fmt_s, log

SECTION_TITLE = "Clustered functions"
SIZE = 2


def _mark(d: str, rank: int) -> None:
    with open(os.path.join(d, f"rank{rank}"), "w") as fh:
        fh.write(repr(time.time()))


def _last_start(d: str) -> float:
    return max(float(Path(d, f"rank{r}").read_text()) for r in range(SIZE))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-save", action="store_true", help="print only; write nothing")
    parser.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    args = parser.parse_args()
    samples = 4 if args.quick else 12
    common.quiet_env()
    import ray
    from ray.cluster_utils import Cluster
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    for _ in range(2):
        cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="modal-main", logging_level="ERROR")
    import modal
    import modal.experimental

    base = tempfile.mkdtemp(prefix="bench-cl-")
    app = modal.App("bench-clustered")

    @app.function(serialized=True)
    @modal.experimental.clustered(size=SIZE)
    def ours_fn(d: str) -> int:
        rank = modal.experimental.get_cluster_info().rank
        _mark(d, rank)
        return rank

    @ray.remote(num_cpus=1)
    class RawRank:
        def address(self) -> str:
            return str(ray.util.get_node_ip_address())

        def run(self, d: str, rank: int, addresses: list[str]) -> int:
            _mark(d, rank)
            return rank

    def raw_call(d: str) -> int:
        pg = placement_group([{"CPU": 1.0}] * SIZE, strategy="STRICT_SPREAD")
        try:
            ray.get(pg.ready(), timeout=60)
            actors = [
                RawRank.options(  # type: ignore[attr-defined]
                    scheduling_strategy=PlacementGroupSchedulingStrategy(
                        pg, placement_group_bundle_index=i
                    )
                ).remote()
                for i in range(SIZE)
            ]
            addresses = ray.get([a.address.remote() for a in actors], timeout=60)
            values = ray.get(
                [a.run.remote(d, i, addresses) for i, a in enumerate(actors)], timeout=60
            )
            for a in actors:
                ray.kill(a)
            return int(values[0])
        finally:
            remove_placement_group(pg)

    started = time.perf_counter()
    to_start: dict[str, list[float]] = {"ours": [], "raw": []}
    whole: dict[str, list[float]] = {"ours": [], "raw": []}
    section = Section(
        key="clustered",
        title=SECTION_TITLE,
        description=(
            f"A `@modal.experimental.clustered(size={SIZE})` call against the same placement"
            " group (STRICT_SPREAD) and actors made by hand, on a three-node"
            " `ray.cluster_utils.Cluster` (one machine, 2 logical CPUs per node); sides"
            " alternate call by call."
        ),
    )
    try:
        with app.run():
            sides: dict[str, Any] = {"ours": ours_fn.remote, "raw": raw_call}
            for call in sides.values():  # warm-up: workers, code export
                d = tempfile.mkdtemp(dir=base)
                assert call(d) == 0
            for i in range(samples):
                order = list(sides.items()) if i % 2 == 0 else list(reversed(sides.items()))
                for name, call in order:
                    d = tempfile.mkdtemp(dir=base)
                    t0 = time.time()
                    p0 = time.perf_counter()
                    assert call(d) == 0
                    whole[name].append(time.perf_counter() - p0)
                    to_start[name].append(_last_start(d) - t0)
            log(f"{samples} calls per side done")
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(base, ignore_errors=True)
    for what, data in (("call to all ranks started", to_start), ("whole call", whole)):
        ours, raw = Latency.of(data["ours"]), Latency.of(data["raw"])
        ratio = ours.median_s / raw.median_s
        section.rows.append(
            Row(
                what=f"clustered size={SIZE}: {what}",
                metric="latency",
                unit="s",
                ours=f"{fmt_s(ours.median_s)} (p99 {fmt_s(ours.p99_s)})",
                raw=f"{fmt_s(raw.median_s)} (p99 {fmt_s(raw.p99_s)})",
                ratio=ratio,
                ratio_label=f"{ratio:.2f}x",
                note=f"median of {ours.n} calls per side",
            )
        )
    section.elapsed_s = time.perf_counter() - started
    for row in section.rows:
        print(f"{row.what}: ours {row.ours} | raw {row.raw} | {row.ratio_label}")
    if args.no_save:
        return
    common.save_section(section)
    if not args.no_docs:
        common.render_docs()


if __name__ == "__main__":
    main()
