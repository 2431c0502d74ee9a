"""Reading Ray's worker log files: which stretches of output belong to which actor or task.

Ray writes each worker's stdout and stderr to `<session>/logs/worker-<id>-<job>-<pid>.out|err`
and marks in them whose output follows: a line `:actor_name:<name>` (an actor's; a Serve
replica's name is `ServeReplica:<application>:<deployment>`) or `:task_name:<name>` (a task's,
named after the function), and `:job_id:<id>`. Ray's log monitor hides those lines when it
forwards output to drivers; here they tell an app's output apart from other apps' on the same
workers. Pure file reading, no engine: the backend runs `read_lines` on each node.

Invariants:
- a cursor (offset, kind, name) is where the previous read stopped and whose stretch it was in,
  so reading on from it continues the stretch without reading the file again;
- only whole lines are read: a line still being written waits for the next read (a line longer
  than a read's limit is taken in pieces).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

ACTOR_MARKER = ":actor_name:"
TASK_MARKER = ":task_name:"
JOB_MARKER = ":job_id:"

Cursor = tuple[int, str, str]  # (offset, "actor" | "task" | "", name)
START: Cursor = (0, "", "")


def wanted(name: str, kind: str, match: Mapping[str, Any]) -> bool:
    """Is the stretch of actor or task `name` one that `match` asks for (`actor_prefixes`: names
    of actors starting with one of them; `task_names`: tasks of exactly these names)?"""
    if not name:
        return False
    if kind == "actor":
        return any(name.startswith(p) for p in match.get("actor_prefixes", ()))
    return name in match.get("task_names", ())


def read_lines(
    path: Path, cursor: Cursor, match: Mapping[str, Any], limit: int
) -> tuple[list[tuple[str, str]], Cursor]:
    """The wanted lines of one worker log file from `cursor`, as (actor or task name, line), and
    the cursor to read on from; at most `limit` bytes are read."""
    offset, kind, name = cursor
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read(limit)
    end = data.rfind(b"\n") + 1
    if end == 0 and len(data) >= limit > 0:
        end = len(data)  # one line longer than `limit`: taken in pieces
    lines: list[tuple[str, str]] = []
    for raw in data[:end].decode("utf-8", "replace").splitlines():
        if raw.startswith(ACTOR_MARKER):
            kind, name = "actor", raw[len(ACTOR_MARKER) :]
        elif raw.startswith(TASK_MARKER):
            kind, name = "task", raw[len(TASK_MARKER) :]
        elif raw.startswith(JOB_MARKER):
            continue
        elif wanted(name, kind, match):
            lines.append((name, raw))
    return lines, (offset + end, kind, name)


def worker_pid(path: Path) -> int:
    """The pid in a worker log file's name (0 if it has none)."""
    last = path.stem.rsplit("-", 1)[-1]
    return int(last) if last.isdigit() else 0


__all__ = ["START", "Cursor", "read_lines", "wanted", "worker_pid"]
