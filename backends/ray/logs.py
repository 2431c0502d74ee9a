"""Worker output that is still on its way to this process when a run ends.

Ray forwards what workers print to the driver in the background: each node's log monitor tails
the workers' log files and publishes new lines, and a thread of the driver prints them. A line
printed just before a call returned (or by an `@exit` hook as its container stops) may still be
in transit when the run prints `App ... stopped.`, and Ray holds back lines that repeat across
workers (its log deduplication) until a later batch or its own shutdown. `drain()` waits until
the stream has been quiet for a moment and prints what deduplication still holds, so a run's
output is complete before it says it has stopped.

Worker output is shown only while output is enabled (`modal run` without `-q`, `modal serve`, a
script inside `modal.enable_output()`), as on Modal, where a script that does not enable output
never sees its functions' logs. `follow_output()` puts that condition in front of Ray's printing
handler on a connection modal-ray made; a Ray that the user started with `ray.init(...)` prints
as the user configured it.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import ray

from modal_ray import output

_HANDLER = "modal_ray_log_clock"
_RAY_PRINTER = "ray_print_logs"  # Ray's own handler, which prints each batch (and is removed
# by Ray's shutdown under this name)
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


def follow_output() -> None:
    """Print worker output only while output is enabled (idempotent). Lines that arrive while
    it is off are dropped, as Modal never sends them to a client that did not ask for them."""
    dispatcher = _dispatcher()
    with _lock:
        printers = [h for name, h in dispatcher.handlers if name == _RAY_PRINTER]
        if not printers or getattr(printers[0], "_modal_ray_gated", False):
            return
        ray_print = printers[0]

        def gated(data: Any) -> None:
            if output.is_enabled():
                ray_print(data)

        gated._modal_ray_gated = True  # type: ignore[attr-defined]
        dispatcher.remove_handler(_RAY_PRINTER)  # (under the same name, so that Ray's
        dispatcher.add_handler(_RAY_PRINTER, gated)  # shutdown still removes it)


def _gated() -> bool:
    return any(
        name == _RAY_PRINTER and getattr(h, "_modal_ray_gated", False)
        for name, h in _dispatcher().handlers
    )


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
    if output.is_enabled() or not _gated():
        _flush_deduplicated()


def _flush_deduplicated() -> None:
    from ray._private import worker as ray_worker
    from ray._private.ray_logging import stderr_deduplicator, stdout_deduplicator

    ignore_prefix = ray_worker._should_ignore_worker_log_prefix(ray_worker.global_worker)
    for batch in stdout_deduplicator.flush():
        ray_worker.print_worker_logs(batch, sys.stdout, ignore_prefix)
    for batch in stderr_deduplicator.flush():
        ray_worker.print_worker_logs(batch, sys.stderr, ignore_prefix)
