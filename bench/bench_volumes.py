"""Volumes: the same file work through a mounted `modal.Volume` and with plain fsspec copies.

Both sides run as Ray tasks on the same local Ray, in one process, sides alternated:

- *modal-ray*: an `@app.function(volumes={path: vol})` writes into the mount (committed when the
  input ends: changed files are copied into the store and a manifest published), or, in a fresh
  container, mounts the volume (its files are copied into a private working copy) and reads it;
- *raw*: a `@ray.remote` task writes to a local scratch directory and `fsspec.put`s it into a
  store directory, or `fsspec.get`s it from there and reads it. This is what the same
  persistence costs without modal-ray (no snapshots, no commit merging, no mount).

Workloads: one 256 MiB file, and 10,000 files of 1 KiB. The store is the default local one
(`<state>/volumes` on the same disk). Run:
`.venv/bin/python bench/bench_volumes.py [--quick] [--repeats N] [--no-docs]`. Results go to
`bench/results.json` (key `volumes`) and, unless `--no-docs`, to the `## Volumes` section of
docs/benchmarks.md (replaced in place).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common
from common import Row, Section, fmt_s, log

SECTION_TITLE = "Volumes"
MIB = 1024 * 1024

DESCRIPTION = """\
Writing and reading through a mounted Volume (`@app.function(volumes={path: vol})`) against a raw
Ray task doing the same persistence with plain fsspec copies (write locally, `fsspec.put` into a
store directory; `fsspec.get` back, then read). Ours includes the mount (a private working copy
for each new container: Modal's snapshot-at-mount model) and the commit when the input ends (scan
for changes, copy them into the store, publish a manifest). Same local Ray, same disk, same
process, sides alternated; each figure is the median wall time of one `.remote()` call."""


def _row(what: str, ours: list[float], raw: list[float], note: str = "") -> Row:
    o, r = statistics.median(ours), statistics.median(raw)
    return Row(
        what=what,
        metric="wall",
        unit="s",
        ours=fmt_s(o),
        raw=fmt_s(r),
        ratio=o / r,
        ratio_label=f"{o / r:.2f}x time",
        note=note,
    )


def run(big_mib: int, n_small: int, repeats: int) -> tuple[list[Row], list[str]]:
    import ray

    import modal

    scratch = Path(tempfile.mkdtemp(prefix="modal-ray-bench-vol-"))
    mount = str(scratch / "mnt" / "data")
    raw_store = str(scratch / "raw-store")
    vol_name = "bench-volume"
    modal.Volume.objects.create(vol_name, allow_existing=True)
    vol = modal.Volume.from_name(vol_name)
    app = modal.App("bench-volumes")
    chunk = os.urandom(MIB)

    @app.function(volumes={mount: vol}, cpu=1)
    def write_big(tag: str) -> int:
        with open(os.path.join(mount, f"big-{tag}.bin"), "wb") as f:
            for _ in range(big_mib):
                f.write(chunk)
        return big_mib

    @app.function(volumes={mount: vol}, cpu=1)
    def read_big(tag: str) -> int:
        total = 0
        with open(os.path.join(mount, f"big-{tag}.bin"), "rb") as f:
            while data := f.read(8 * MIB):
                total += len(data)
        return total

    @app.function(volumes={mount: vol}, cpu=1)
    def write_small(tag: str) -> int:
        d = os.path.join(mount, f"small-{tag}")
        os.makedirs(d)
        for i in range(n_small):
            with open(os.path.join(d, f"{i:05d}.txt"), "wb") as f:
                f.write(chunk[:1024])
        return n_small

    @app.function(volumes={mount: vol}, cpu=1)
    def read_small(tag: str) -> int:
        d = os.path.join(mount, f"small-{tag}")
        total = 0
        for name in os.listdir(d):
            with open(os.path.join(d, name), "rb") as f:
                total += len(f.read())
        return total

    @ray.remote(num_cpus=1)
    def raw_write_big(tag: str) -> int:
        import fsspec

        fs = fsspec.filesystem("file")
        local = tempfile.mkdtemp(dir=scratch)
        path = os.path.join(local, "big.bin")
        with open(path, "wb") as f:
            for _ in range(big_mib):
                f.write(chunk)
        fs.put_file(path, f"{raw_store}/big-{tag}.bin")
        fs.rm(local, recursive=True)
        return big_mib

    @ray.remote(num_cpus=1)
    def raw_read_big(tag: str) -> int:
        import fsspec

        fs = fsspec.filesystem("file")
        local = tempfile.mkdtemp(dir=scratch)
        path = os.path.join(local, "big.bin")
        fs.get_file(f"{raw_store}/big-{tag}.bin", path)
        total = 0
        with open(path, "rb") as f:
            while data := f.read(8 * MIB):
                total += len(data)
        fs.rm(local, recursive=True)
        return total

    @ray.remote(num_cpus=1)
    def raw_write_small(tag: str) -> int:
        import fsspec

        fs = fsspec.filesystem("file")
        local = tempfile.mkdtemp(dir=scratch)
        for i in range(n_small):
            with open(os.path.join(local, f"{i:05d}.txt"), "wb") as f:
                f.write(chunk[:1024])
        fs.put(local + "/", f"{raw_store}/small-{tag}/", recursive=True)
        fs.rm(local, recursive=True)
        return n_small

    @ray.remote(num_cpus=1)
    def raw_read_small(tag: str) -> int:
        import fsspec

        fs = fsspec.filesystem("file")
        local = tempfile.mkdtemp(dir=scratch)
        fs.get(f"{raw_store}/small-{tag}/", local + "/", recursive=True)
        total = 0
        for root, _dirs, files in os.walk(local):
            for name in files:
                with open(os.path.join(root, name), "rb") as f:
                    total += len(f.read())
        fs.rm(local, recursive=True)
        return total

    os.makedirs(raw_store, exist_ok=True)
    results: dict[str, list[float]] = {k: [] for k in ("wb", "rb", "ws", "rs")}
    raw: dict[str, list[float]] = {k: [] for k in ("wb", "rb", "ws", "rs")}

    def timed(fn: Any, *args: Any) -> float:
        # Start each operation with no dirty pages queued for writeback: on this VM's disk a
        # writeback of the previous step's data otherwise stalls whichever side runs next.
        os.sync()
        t0 = time.perf_counter()
        fn(*args)
        return time.perf_counter() - t0

    for r in range(repeats + 1):  # round 0 warms both sides up and is not counted
        tag = f"r{r}"
        ours_first = r % 2 == 0
        for side in ("ours", "raw") if ours_first else ("raw", "ours"):
            if side == "ours":
                # A new app run: new containers, so each read mounts (copies) afresh.
                with app.run():
                    t = {
                        "wb": timed(write_big.remote, tag),
                        "rb": timed(read_big.remote, tag),
                        "ws": timed(write_small.remote, tag),
                        "rs": timed(read_small.remote, tag),
                    }
                target = results
            else:
                t = {
                    "wb": timed(lambda x: ray.get(raw_write_big.remote(x)), tag),
                    "rb": timed(lambda x: ray.get(raw_read_big.remote(x)), tag),
                    "ws": timed(lambda x: ray.get(raw_write_small.remote(x)), tag),
                    "rs": timed(lambda x: ray.get(raw_read_small.remote(x)), tag),
                }
                target = raw
            if r:
                for k, v in t.items():
                    target[k].append(v)
            log(f"round {r} {side}: " + ", ".join(f"{k} {v:.2f}s" for k, v in t.items()))
        # Keep the disk from filling up: drop this round's data on both sides.
        vol.remove_file(f"big-{tag}.bin")
        vol.remove_file(f"small-{tag}", recursive=True)
        for name in (f"big-{tag}.bin", f"small-{tag}"):
            common_rm(os.path.join(raw_store, name))

    rows = [
        _row(
            f"write a {big_mib} MiB file",
            results["wb"],
            raw["wb"],
            "ours: write into the mount, commit at input end (one copy into the store)",
        ),
        _row(
            f"read a {big_mib} MiB file (fresh container)",
            results["rb"],
            raw["rb"],
            "ours: mount = copy into the container's working copy, then read",
        ),
        _row(
            f"write {n_small:,} files of 1 KiB",
            results["ws"],
            raw["ws"],
            "ours: commit scans the mount and copies each new file into the store",
        ),
        _row(f"read {n_small:,} files of 1 KiB (fresh container)", results["rs"], raw["rs"]),
    ]
    notes = [
        f"{repeats} timed rounds after one warm-up round; a new `app.run()` per round on our side",
        "both sides copy the data once into the store on write and once out of it on read;"
        " ours also keeps Modal's semantics (private snapshot per container, per-file merge of"
        " concurrent commits, path checks)",
        "the store is on the same local disk; with `MODAL_RAY_VOLUMES=s3://...` both sides"
        " would be bound by the object store instead",
        "`os.sync()` runs before each timed call (outside the timing) so that neither side pays"
        " for the other's writeback",
        "small-file figures are dominated by the disk (a plain `shutil.copytree` of the 10,000"
        " files takes about as long as our mount on this VM) and vary up to 2x between rounds on"
        " both sides: compare medians of several runs, not single rows",
    ]
    common_rm(str(scratch))
    return rows, notes


def common_rm(path: str) -> None:
    from modal_ray.volumes.localfs import remove_tree

    remove_tree(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller and fewer (smoke run)")
    parser.add_argument("--repeats", type=int, default=0, help="timed rounds per side")
    parser.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    big = 32 if args.quick else 256
    small = 1000 if args.quick else 10_000

    state = tempfile.mkdtemp(prefix="modal-ray-bench-")
    os.environ.setdefault("MODAL_RAY_STATE", state)
    os.environ.setdefault("MODAL_RAY_VOLUME_CACHE", os.path.join(state, "volume-cache"))
    common.quiet_env()  # the product's defaults (token authentication on), before Ray loads
    import ray

    common.start_ray()
    t0 = time.perf_counter()
    try:
        rows, notes = run(big, small, repeats)
    finally:
        ray.shutdown()
        common_rm(state)
    section = Section(
        key="volumes",
        title=SECTION_TITLE,
        description=DESCRIPTION,
        rows=rows,
        notes=notes,
        elapsed_s=time.perf_counter() - t0,
    )
    common.save_section(section)
    for r in section.rows:
        log(f"{r.what}: {r.ours} vs {r.raw} ({r.ratio_label})")
    if not args.no_docs:
        common.write_docs_section(section, "bench_volumes.py")
        log(f"wrote the '{SECTION_TITLE}' section of {common.DOCS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
