"""The `modal` command line: a typer app with one module per command group.

| command | module |
|---|---|
| `modal run` | `run.py` (references in `import_refs.py`, options in `params.py`) |
| `modal secret create/list/delete` | `secret.py` |

`main()` (in `entry_point.py`) is the console script and `python -m modal`.
"""

from .entry_point import entrypoint_cli, entrypoint_cli_typer, main

__all__ = ["entrypoint_cli", "entrypoint_cli_typer", "main"]
