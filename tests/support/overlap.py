"""Counting how many inputs run at once, without relying on how fast anything is.

Each input marks itself running in a small JSON state file (under an exclusive lock, since
containers are separate processes), records the peak number of inputs running at once, and
then waits until `slots` inputs run together (or a generous deadline passes) before it leaves.
So a container that takes `slots` inputs at once shows a peak of exactly `slots` however slow
the machine is, one that takes them one by one shows 1 (never a lucky overlap), and one that
takes more than `slots` shows more.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

GATHER_TIMEOUT_S = 10.0  # bounds the wait of an input that never gets company; not asserted


def update(path: str, change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """Apply `change(state)` to the JSON state at `path` under an exclusive lock."""
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            f.seek(0)
            text = f.read()
            state: dict[str, Any] = json.loads(text) if text else {}
            change(state)
            f.seek(0)
            f.truncate()
            f.write(json.dumps(state))
            f.flush()  # before the lock is released
            return state
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read(path: str) -> dict[str, Any]:
    text = Path(path).read_text() if Path(path).exists() else ""
    result: dict[str, Any] = json.loads(text) if text else {}
    return result


def _enter(state: dict[str, Any]) -> None:
    state["running"] = state.get("running", 0) + 1
    state["peak"] = max(state.get("peak", 0), state["running"])


def _leave(state: dict[str, Any]) -> None:
    state["running"] -= 1
    state["done"] = state.get("done", 0) + 1


def _gathered(path: str, slots: int) -> bool:
    return int(update(path, lambda s: None).get("peak", 0)) >= slots


def occupy(path: str, slots: int, timeout: float = GATHER_TIMEOUT_S) -> None:
    """Run as one input: count it, wait until `slots` inputs ran at once (or give up), leave."""
    update(path, _enter)
    deadline = time.monotonic() + timeout
    while not _gathered(path, slots) and time.monotonic() < deadline:
        time.sleep(0.02)
    update(path, _leave)


async def occupy_async(path: str, slots: int, timeout: float = GATHER_TIMEOUT_S) -> None:
    """`occupy` for an async input: it waits without blocking its container's event loop."""
    update(path, _enter)
    deadline = time.monotonic() + timeout
    while not _gathered(path, slots) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    update(path, _leave)
