"""`modal.output`: `enable_output()`, which turns on status lines, logs and map progress."""

import contextlib
from collections.abc import Iterator

from modal_ray import output as _output


@contextlib.contextmanager
def enable_output() -> Iterator[None]:
    """Print app status and map progress (to stderr) inside this block."""
    with _output.enable_output():
        yield


__all__ = ["enable_output"]
