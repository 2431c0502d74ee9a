"""The `modal` command line: a typer app with one module per command group.

| command | module |
|---|---|
| `modal run` | `run.py` (references in `import_refs.py`, options in `params.py`) |
| `modal dict create/list/clear/get/items/delete` | `dict.py` |
| `modal queue create/list/clear/peek/len/delete` | `queue.py` |
| `modal secret create/list/delete` | `secret.py` |
| `modal volume ...` (and the legacy `modal nfs ...`) | `volume.py`, `nfs.py` |

`main()` (in `entry_point.py`) is the console script and `python -m modal`.
"""

from .entry_point import entrypoint_cli, entrypoint_cli_typer, main

__all__ = ["entrypoint_cli", "entrypoint_cli_typer", "main"]
