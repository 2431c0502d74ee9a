"""Hello world: one function called remotely, locally and over a map.

    modal run examples/hello_world.py

`f` runs as a Ray task (a Modal "container"): its prints reach this terminal with a
`(f pid=...)` prefix, and inside it `modal.is_local()` is False. The local entrypoint's own
output is deterministic:

    f.local(1000) = 1000000
    f.remote(1000) = 1000000
    inside a function, modal.is_local() is False
    sum of squares: 2470
"""

import sys

import modal

app = modal.App("hello-world")


@app.function()
def f(i: int) -> int:
    if i % 2 == 0:
        print("hello", i)
    else:
        print("world", i, file=sys.stderr)
    return i * i


@app.function()
def is_local_inside() -> bool:
    return modal.is_local()


@app.local_entrypoint()
def main() -> None:
    # Runs here, as a plain Python call.
    print("f.local(1000) =", f.local(1000))

    # Runs in a worker.
    print("f.remote(1000) =", f.remote(1000))
    print("inside a function, modal.is_local() is", is_local_inside.remote())

    # Runs in parallel workers; results come back in input order.
    total = 0
    for square in f.map(range(20)):
        total += square
    print("sum of squares:", total)
