"""Shared by `modal app logs`, `modal function logs` and `modal container logs|list`: finding
the deployed app, its containers, and printing the workers' output.

Output comes from the workers' log files on every node (`modal_ray.operations`). Those files
carry no time or call id per line, so `--since`, `--until`, `--timestamps` and
`--function-call` are refused with what to use instead, never ignored.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from modal.exception import InvalidError, NotFoundError, UnimplementedError

if TYPE_CHECKING:
    from modal_ray.backends import Backend

SOURCES = ("stdout", "stderr")


def refuse_unrecorded(
    since: str | None = None,
    until: str | None = None,
    timestamps: bool = False,
    function_call: str = "",
) -> None:
    given = [
        flag
        for flag, value in (
            ("--since", since),
            ("--until", until),
            ("--timestamps", timestamps),
            ("--function-call", function_call),
        )
        if value
    ]
    if given:
        raise UnimplementedError(
            f"{', '.join(given)}: Ray's worker log files, where this output comes from, record no"
            " time or call id per line. Use `--tail N`, `--search TEXT` or `--follow` instead."
        )


def check_source(source: str | None) -> None:
    if source is not None and source not in SOURCES:
        raise InvalidError(
            f"Invalid --source {source!r}: use stdout or stderr (Ray's own system logs are in its"
            " session folder, `/tmp/ray/session_latest/logs` on each node)."
        )


def started(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds).isoformat(" ", "seconds") if seconds else "-"


def connect(env: str | None, what: str) -> tuple[Backend, str]:
    from modal_ray import config
    from modal_ray.operations import require_cluster

    environment = config.environment_name(env)
    return require_cluster(what), environment


def find_app(backend: Backend, environment: str, identifier: str) -> dict[str, Any]:
    from modal_ray.operations import app_entry

    return app_entry(backend, environment, identifier)


def split_function_ref(ref: str) -> tuple[str, str]:
    """`APP.FUNCTION` / `APP::FUNCTION` -> (app, tag)."""
    for sep in ("::", "."):
        app, found, tag = ref.partition(sep)
        if found and app and tag:
            return app, tag
    raise InvalidError(
        f"Invalid function reference {ref!r}: write it as `APP_NAME.FUNCTION_NAME` (a class"
        " method's containers are the class's: `APP_NAME.ClassName`)."
    )


def container_labels(backend: Backend, environment: str) -> dict[tuple[str, int], str]:
    """(node, pid) -> container id, for the environment's running containers."""
    return {(c["node"], c["pid"]): c["container_id"] for c in backend.containers(environment, None)}


def print_output(
    backend: Backend,
    match: dict[str, Any],
    *,
    follow: bool,
    tail: int | None,
    search: str | None,
    source: str | None,
    labels: dict[str, str] | None = None,
    containers: dict[tuple[str, int], str] | None = None,
) -> None:
    """Print the matching lines (the last `tail` of those written so far), then follow."""
    import time

    check_source(source)

    def shown(line: dict[str, Any]) -> str | None:
        if source is not None and line["source"] != source:
            return None
        if search and search not in line["line"]:
            return None
        prefix = ""
        if labels is not None:
            prefix += f"[{_label(labels, line['name'])}] "
        if containers is not None:
            prefix += f"[{containers.get((line['node'], line['pid']), '-')}] "
        return prefix + str(line["line"])

    first = True
    cursors: dict[str, Any] = {}
    while True:
        lines, cursors = backend.read_output(match, cursors)
        texts = [t for t in (shown(line) for line in lines) if t is not None]
        if first and tail is not None:
            texts = texts[-tail:] if tail > 0 else []
        first = False
        for text in texts:
            print(text, flush=True)
        if not follow:
            return
        time.sleep(1.0)


def _label(labels: dict[str, str], name: str) -> str:
    for key, label in labels.items():
        if name == key or name.startswith(key):
            return label
    return "-"


def no_container(container_id: str, environment: str) -> NotFoundError:
    return NotFoundError(
        f"No running container {container_id!r} in environment {environment!r}; see"
        " `modal container list`."
    )


__all__ = [
    "check_source",
    "connect",
    "container_labels",
    "find_app",
    "print_output",
    "refuse_unrecorded",
    "split_function_ref",
    "started",
]
