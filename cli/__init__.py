"""The `modal` command line: a typer app with one module per command group.

| command | module |
|---|---|
| `modal run` | `run.py` (references in `import_refs.py`, options in `params.py`) |
| `modal dict create/list/clear/get/items/delete` | `dict.py` |
| `modal queue create/list/clear/peek/len/delete` | `queue.py` |
| `modal secret create/list/delete` | `secret.py` |
| `modal volume ...` (and the legacy `modal nfs ...`) | `volume.py`, `nfs.py` |
| `modal deploy`, `modal serve` (not built yet) | `deploy.py` |
| `modal shell` (not built yet) | `shell.py` |
| `modal app ...` (not built yet) | `app.py` |
| `modal container ...` (not built yet) | `container.py` |
| `modal environment ...` (not built yet) | `environment.py` |
| `modal config ...` (not built yet) | `config.py` |
| `modal profile ...` (not built yet) | `profile.py` |
| `modal token ...`, `modal setup` (not built yet) | `token.py` |

Commands not built yet exist with Modal's options and fail with one line (`unbuilt.py`).

`main()` (in `entry_point.py`) is the console script and `python -m modal`.
"""

from .entry_point import entrypoint_cli, entrypoint_cli_typer, main

__all__ = ["entrypoint_cli", "entrypoint_cli_typer", "main"]
