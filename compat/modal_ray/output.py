"""`modal.enable_output()`: status lines and map progress, silent unless enabled.

`modal run` enables output for the whole run; a script enables it with the context manager.
Progress bars use rich and write to stderr, so a program's own stdout stays clean. A live bar hides
the cursor; every bar still live when the interpreter exits (an interrupted run whose map could not
close it) is stopped then, so the terminal gets its cursor back.
"""

from __future__ import annotations

import atexit
import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any

_depth = 0
_show_progress = True
_lock = threading.Lock()
_live: set[MapProgress] = set()


@contextlib.contextmanager
def enable_output(show_progress: bool = True) -> Iterator[None]:
    global _depth, _show_progress
    with _lock:
        _depth += 1
        previous = _show_progress
        _show_progress = show_progress
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            _show_progress = previous


def is_enabled() -> bool:
    return _depth > 0


def status(message: str) -> None:
    """A one-line status message ("✓ Initialized. ...") when output is on."""
    if _depth > 0:
        print(message, file=sys.stderr, flush=True)


class MapProgress:
    """A progress bar for one `.map`, or nothing when output is off."""

    def __init__(self, label: str, total: int | None) -> None:
        self._progress: Any = None
        self._task: Any = None
        if _depth > 0 and _show_progress:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            console = Console(file=sys.stderr)
            # On a terminal the bar disappears when done; in logs the final state is kept.
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=console.is_terminal,
            )
            self._task = self._progress.add_task(label, total=total)
            with _lock:
                _live.add(self)
            self._progress.start()

    def advance(self, n: int) -> None:
        progress = self._progress
        if progress is not None:
            progress.advance(self._task, n)

    def close(self) -> None:
        """Stop the bar (idempotent; safe from any thread)."""
        with _lock:
            progress, self._progress = self._progress, None
            _live.discard(self)
        if progress is not None:
            progress.stop()


@atexit.register
def _close_live_bars() -> None:
    with _lock:
        bars = list(_live)
    for bar in bars:
        bar.close()
