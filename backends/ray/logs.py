"""Worker output that is still on its way to this process when a run ends.

Ray forwards what workers print to the driver in the background: each node's log monitor tails
the workers' log files and publishes new lines, and a thread of the driver prints them. A line
printed just before a call returned (or by an `@exit` hook as its container stops) may still be
in transit when the run prints `App ... stopped.`, and Ray holds back lines that repeat across
workers (its log deduplication) until a later batch or its own shutdown. `drain()` waits until
the stream has been quiet for a moment and prints what deduplication still holds, so a run's
output is complete before it says it has stopped.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import ray

_HANDLER = "modal_ray_log_clock"
_lock = threading.Lock()
_last_batch = 0.0


def _note_batch(data: Any) -> None:
    global _last_batch
    _last_batch = time.monotonic()


def _dispatcher() -> Any:
    from ray._private.ray_logging import global_worker_stdstream_dispatcher

    return global_worker_stdstream_dispatcher


def watch() -> None:
    """Note the arrival time of each batch of worker output (idempotent)."""
    dispatcher = _dispatcher()
    with _lock:
        if not any(name == _HANDLER for name, _ in dispatcher.handlers):
            dispatcher.add_handler(_HANDLER, _note_batch)


def drain(quiet_s: float = 0.5, limit_s: float = 3.0) -> None:
    """Wait (at most `limit_s`) until no worker output arrived for `quiet_s`, then print the
    lines Ray's deduplication still holds."""
    from ray._private import worker as ray_worker

    if not ray.is_initialized() or ray_worker.global_worker.mode != ray_worker.SCRIPT_MODE:
        return  # only a driver prints its workers' output
    watch()
    start = time.monotonic()
    while True:
        now = time.monotonic()
        if now - max(_last_batch, start) >= quiet_s or now - start >= limit_s:
            break
        time.sleep(0.05)
    _flush_deduplicated()


def _flush_deduplicated() -> None:
    from ray._private import worker as ray_worker
    from ray._private.ray_logging import stderr_deduplicator, stdout_deduplicator

    ignore_prefix = ray_worker._should_ignore_worker_log_prefix(ray_worker.global_worker)
    for batch in stdout_deduplicator.flush():
        ray_worker.print_worker_logs(batch, sys.stdout, ignore_prefix)
    for batch in stderr_deduplicator.flush():
        ray_worker.print_worker_logs(batch, sys.stderr, ignore_prefix)
