"""The functions both sides of `bench_functions.py` run, in an importable module.

modal-ray finds module-level functions of an importable module by reference in the worker (as
Modal re-imports the user's module); Ray workers inherit the driver's `sys.path`, which holds
`bench/` when a script in it is run.
"""

from __future__ import annotations

from typing import Any

import ray

import modal

app = modal.App("bench")


@app.function()
def noop(x: Any) -> Any:
    return x


@app.function()
def size_of(b: bytes) -> int:
    return len(b)


@ray.remote
def raw(x: Any) -> Any:
    return x


@ray.remote
def raw_chunk(xs: list[Any]) -> list[Any]:
    return [x for x in xs]  # noqa: C416 - one step per input, like the per-input side


@ray.remote
def raw_size_of(b: bytes) -> int:
    return len(b)


@ray.remote
def raw_size_of_chunk(bs: list[bytes]) -> list[int]:
    return [len(b) for b in bs]
