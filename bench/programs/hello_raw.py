"""The raw Ray twin of `hello_modal.py`: the same calls with `@ray.remote`, in a plain script.

It starts Ray the way modal-ray's embedded Ray does (private local Ray, no dashboard, quiet logs)
and, like it, leaves the shutdown to Ray's exit handler.
"""

import ray


@ray.remote
def hello(name: str) -> str:
    return f"Hello, {name}!"


def main() -> None:
    ray.init(address="local", include_dashboard=False, logging_level="ERROR")
    print(ray.get(hello.remote("world")))
    print(ray.get([hello.remote(str(i)) for i in range(20)]))


if __name__ == "__main__":
    main()
