"""Small helpers shared by the CLI's command groups: warnings, tables, the `--env` help text.

Warnings and status go to stderr so that a command's own output (tables, JSON, a program's prints)
stays clean on stdout.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

ENV_HELP = (
    "Environment to interact with. If not specified, the `MODAL_ENVIRONMENT` variable is used,"
    " else the default environment (`main`)."
)


def warn(message: str) -> None:
    """One `Warning: ...` line on stderr."""
    print(f"Warning: {message}", file=sys.stderr, flush=True)


def display_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    json_output: bool = False,
    title: str = "",
) -> None:
    """A rich table on stdout, or a JSON list of `{column: value}` objects with `--json`."""
    if json_output:
        records = [dict(zip(columns, row, strict=True)) for row in rows]
        print(json.dumps(records, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, title=title or None)
    for row in rows:
        table.add_row(*("-" if v is None else str(v) for v in row))
    Console().print(table)
