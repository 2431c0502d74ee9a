"""A warm model service: one class, loaded once per container, called many ways.

    modal run examples/embeddings_service.py

`Embedder` is a Modal class (a pool of warm containers on Ray Serve): `@modal.enter` "loads the
model" once per container, `@modal.concurrent` lets one container serve several inputs at once,
and the `dim` parameter gives each distinct value its own pool. A batched function groups
concurrent calls into one list call, and a Dict/Queue pair hands results between functions.
The entrypoint's output is deterministic:

    embed('ray') = [3, 114, 97]
    dims 3 and 5 live in different containers: True
    batched sums: [3, 7, 11, 15]
    queue drained: ['a', 'b', 'c']
"""

import os

import modal

app = modal.App("embeddings-service")


@app.cls(cpu=0.25, max_containers=2, scaledown_window=10)
@modal.concurrent(max_inputs=4)
class Embedder:
    dim: int = modal.parameter(default=3)

    @modal.enter()
    def load(self) -> None:
        # Stands in for loading weights: runs once per container, before its first input.
        self.table = {c: ord(c) for c in "abcdefghijklmnopqrstuvwxyz"}
        self.pid = os.getpid()

    @modal.method()
    def embed(self, word: str) -> list[int]:
        values = [len(word), *(self.table.get(c, 0) for c in word)]
        return values[: self.dim]

    @modal.method()
    def container(self) -> int:
        return self.pid


@app.function(cpu=0.25, max_containers=1)
@modal.batched(max_batch_size=4, wait_ms=100)
def pair_sum(xs: list[int], ys: list[int]) -> list[int]:
    return [x + y for x, y in zip(xs, ys, strict=True)]


@app.function(cpu=0.25)
def producer(q: modal.Queue, items: list[str]) -> int:
    q.put_many(items)
    return len(items)


@app.local_entrypoint()
def main() -> None:
    small, large = Embedder(), Embedder(dim=5)
    print("embed('ray') =", small.embed.remote("ray"))
    print(
        "dims 3 and 5 live in different containers:",
        small.container.remote() != large.container.remote(),
    )
    print("batched sums:", list(pair_sum.map([1, 3, 5, 7], [2, 4, 6, 8])))
    with modal.Queue.ephemeral() as q:
        producer.remote(q, ["a", "b", "c"])
        print("queue drained:", q.get_many(3, timeout=30))
