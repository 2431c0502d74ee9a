"""Command-line arguments for `modal run`, parsed from the entrypoint's signature.

    modal run examples/cli_args.py --count 3
    modal run examples/cli_args.py --count 3 --ratio 0.25 --name Ray --shout --day 2024-05-06
    modal run examples/cli_args.py --help

A parameter without a default is a required option; `bool` becomes `--flag/--no-flag`;
`my_arg` is spelled `--my-arg` (or `--my_arg`).

Any function of the app can be the entrypoint instead; it then runs remotely:

    modal run examples/cli_args.py::square --x 7
    modal run examples/cli_args.py::app.square --x 7

A function (or entrypoint) that takes `*args` receives the raw tokens, to parse them itself:

    modal run --write-result out.txt examples/cli_args.py::echo hello --to=world
"""

from datetime import datetime

import modal

app = modal.App("cli-args")


@app.function()
def square(x: int) -> int:
    print(f"square({x}) = {x * x}")
    return x * x


@app.function()
def echo(*argv: str) -> str:
    return " ".join(argv)


@app.local_entrypoint()
def main(
    count: int,
    ratio: float = 0.5,
    name: str = "world",
    shout: bool = False,
    day: datetime | None = None,
    repeat_greeting: int = 1,
) -> None:
    """Print the parsed arguments, then square `count` remotely."""
    greeting = f"hello {name}"
    if shout:
        greeting = greeting.upper() + "!"
    for _ in range(repeat_greeting):
        print(greeting)
    print(f"count={count!r} ratio={ratio!r} name={name!r} shout={shout!r}")
    print(f"day={day.date().isoformat() if day else None}")
    print(f"square(count) = {square.remote(count)}")
