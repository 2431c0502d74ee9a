"""GPU requests on a real GPU machine: one short run that checks placement and visibility.

For a machine with NVIDIA GPUs (e.g. one H100): starts a private local Ray (which detects the GPUs,
their count and type), then runs Modal functions asking for:

- `gpu="<the machine's type>"` (e.g. "H100"), `gpu="any"`, a fallback list whose first type the
  machine lacks (`["A100-80GB", "<its type>"]`), a Modal class with `gpu="<its type>"`, and a
  `@modal.experimental.clustered(size=1)` function with the same GPU: each must run, and its
  function must see exactly the devices it asked for, of the right type: `CUDA_VISIBLE_DEVICES`
  lists that many devices, and the CUDA driver (libcuda, through ctypes: no torch needed) counts
  that many and names them;
- `gpu="<its type>:<all its GPUs + 1>"`, a type the machine lacks (`"A100-80GB:2"` on an H100
  machine) and a clustered `size=2` on one node: each must fail at once with `InvalidError`
  (never hang).

Prints one `CHECK <name>: PASS|FAIL <detail>` line per check and a final `RESULT {json}` line;
exits 1 if any check fails. Quote the output in docs/benchmarks.md with the device it ran on.

Run (about a minute): `.venv/bin/python bench/gpu_check.py`. `--fake` runs the same checks on a
CPU-only machine against a Ray that pretends to have two H100s (logical GPUs, no CUDA driver):
it checks the script and the placement logic, not the hardware.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import time
from typing import Any

import common

CHECKS: list[dict[str, Any]] = []


def check(name: str, ok: bool, detail: Any) -> None:
    CHECKS.append({"name": name, "ok": ok, "detail": detail})
    print(f"CHECK {name}: {'PASS' if ok else 'FAIL'} {detail}", flush=True)


def device_view() -> dict[str, Any]:
    """What the function sees: CUDA_VISIBLE_DEVICES and the CUDA driver's own device list."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    view: dict[str, Any] = {"visible": visible, "driver_count": None, "names": []}
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        view["driver_error"] = f"no libcuda: {exc}"
        return view
    if cuda.cuInit(0) != 0:
        view["driver_error"] = "cuInit failed"
        return view
    count = ctypes.c_int()
    cuda.cuDeviceGetCount(ctypes.byref(count))
    view["driver_count"] = count.value
    for i in range(count.value):
        dev = ctypes.c_int()
        cuda.cuDeviceGet(ctypes.byref(dev), i)
        name = ctypes.create_string_buffer(256)
        cuda.cuDeviceGetName(name, 256, dev)
        view["names"].append(name.value.decode())
    return view


def machine_gpus() -> list[str]:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line for line in out.stdout.splitlines() if line.startswith("GPU ")]


def ray_gpu_type() -> tuple[int, str | None]:
    """(GPUs, accelerator type) of the local Ray node, as Ray detected them."""
    import ray

    res = ray.cluster_resources()  # type: ignore[no-untyped-call]
    types = sorted(k.split(":", 1)[1] for k in res if k.startswith("accelerator_type:"))
    return int(res.get("GPU", 0)), (types[0] if types else None)


def sees(view: dict[str, Any], count: int, gpu_type: str, fake: bool) -> tuple[bool, str]:
    visible = [d for d in (view.get("visible") or "").split(",") if d.strip()]
    ok = len(visible) == count
    if not fake:
        ok = ok and view.get("driver_count") == count
        ok = ok and all(gpu_type.upper() in n.upper() for n in view.get("names", []))
    return ok, json.dumps(view)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fake", action="store_true", help="CPU-only dry run (no CUDA)")
    args = parser.parse_args()
    common.quiet_env()
    import ray

    init: dict[str, Any] = dict(common.RAY_INIT_KWARGS)
    if args.fake:
        init.update(
            num_gpus=2,
            resources={"accelerator_type:H100": 1},
            labels={"ray.io/accelerator-type": "H100"},
        )
    else:
        init.pop("num_cpus")
        init["num_cpus"] = max(4, os.cpu_count() or 4)
    started = time.perf_counter()
    ray.init(**init, namespace="modal-main")
    import modal
    import modal.experimental
    from modal.exception import InvalidError

    n_gpus, gpu_type = ray_gpu_type()
    print(
        "MACHINE "
        + json.dumps({"nvidia-smi": machine_gpus(), "ray_gpus": n_gpus, "ray_type": gpu_type}),
        flush=True,
    )
    if not n_gpus or not gpu_type:
        check("ray detects the GPUs and their type", False, f"GPU={n_gpus} type={gpu_type}")
        ray.shutdown()
        sys.exit(1)
    missing = "A100-80GB" if gpu_type != "A100" else "H100"
    app = modal.App("gpu-check")
    fake = args.fake

    def define(name: str, gpu: Any) -> Any:
        def view() -> dict[str, Any]:
            return device_view()

        view.__name__ = view.__qualname__ = name
        return app.function(gpu=gpu, serialized=True, timeout=120)(view)

    one = define("one", gpu_type)
    any_gpu = define("any_gpu", "any")
    fallback = define("fallback", [missing, gpu_type])
    too_many = define("too_many", f"{gpu_type}:{n_gpus + 1}")
    absent = define("absent", f"{missing}:2")

    @app.cls(gpu=gpu_type, serialized=True, timeout=120)
    class Pool:
        @modal.method()
        def view(self) -> dict[str, Any]:
            return device_view()

    @app.function(gpu=gpu_type, serialized=True, timeout=120)
    @modal.experimental.clustered(size=1)
    def ranked() -> dict[str, Any]:
        info = modal.experimental.get_cluster_info()
        return {**device_view(), "rank": info.rank, "ips": info.container_ips}

    @app.function(gpu=gpu_type, serialized=True, timeout=120)
    @modal.experimental.clustered(size=2)
    def two_ranks() -> int:
        return modal.experimental.get_cluster_info().rank

    try:
        with app.run():
            for name, fn, count in (
                (f"gpu={gpu_type!r}", one, 1),
                ("gpu='any'", any_gpu, 1),
                (f"gpu=[{missing!r}, {gpu_type!r}] (fallback)", fallback, 1),
            ):
                try:
                    check(name, *sees(fn.remote(), count, gpu_type, fake))
                except Exception as exc:
                    check(name, False, repr(exc))
            try:
                check(f"@app.cls(gpu={gpu_type!r})", *sees(Pool().view.remote(), 1, gpu_type, fake))
            except Exception as exc:
                check(f"@app.cls(gpu={gpu_type!r})", False, repr(exc))
            try:
                view = ranked.remote()
                ok, detail = sees(view, 1, gpu_type, fake)
                check(f"clustered(size=1) gpu={gpu_type!r}", ok and view["rank"] == 0, detail)
            except Exception as exc:
                check(f"clustered(size=1) gpu={gpu_type!r}", False, repr(exc))
            for name, fn in (
                (f"gpu={gpu_type}:{n_gpus + 1} refused", too_many),
                (f"gpu={missing}:2 refused", absent),
                ("clustered(size=2) on one node refused", two_ranks),
            ):
                t0 = time.perf_counter()
                try:
                    fn.remote()
                    check(name, False, "ran")
                except InvalidError as exc:
                    check(name, True, f"InvalidError in {time.perf_counter() - t0:.1f} s: {exc}")
                except Exception as exc:
                    check(name, False, repr(exc))
    finally:
        ray.shutdown()
    failed = [c["name"] for c in CHECKS if not c["ok"]]
    summary = {
        "device": gpu_type,
        "gpus": n_gpus,
        "fake": fake,
        "passed": len(CHECKS) - len(failed),
        "failed": failed,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print("RESULT " + json.dumps(summary), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
