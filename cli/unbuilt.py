"""Commands of Modal's CLI that modal-ray has not built yet.

They exist with Modal's arguments and options, so `--help` and usage errors behave as on Modal,
and running one fails with a single line (`UnimplementedError`, exit status 1) that says what is
missing and what to use instead. Without them click answers "No such command" (exit status 2),
which reads as a broken install.

When a command gets built, its body replaces the `not_built(...)` call in its group's module.
"""

from __future__ import annotations

from enum import Enum
from typing import NoReturn

from modal.exception import UnimplementedError

# What to use instead, shared by several commands.
RUN_INSTEAD = (
    "Run the app with `modal run APP_REF` (or `with app.run():` in a script): it lives while the"
    " command does."
)
MODULE_MODE_HELP = "Interpret argument as a Python module path instead of a file/script path."
DEPLOYED_APPS = (
    "Deployed apps can be deployed again (`modal deploy`), rolled back (`modal app rollback`) and"
    " stopped (`modal app stop`); staged versions and rollovers are not built yet."
)
RAY_TOOLS = (
    "modal-ray keeps no statistics of its own: see Ray's dashboard (its Serve and Jobs pages) or"
    " its Prometheus metrics, and `modal app info|logs` / `modal container list`."
)
NO_ACCOUNT = (
    "modal-ray has no Modal account, token or profile: it runs on the Ray cluster at"
    " `MODAL_RAY_ADDRESS` (or starts one on this machine), and the cluster's own access rules"
    " apply."
)
CONFIG_FROM_ENV = (
    "Settings come from environment variables (`MODAL_RAY_ADDRESS`, `MODAL_ENVIRONMENT`,"
    " `MODAL_RAY_STATE`, `MODAL_TRACEBACK`, ...): set them in the shell instead."
)


class Strategy(str, Enum):
    """`--strategy` of `modal deploy` and `modal app rollback/rollover`."""

    rolling = "rolling"
    recreate = "recreate"


def not_built(command: str, what_to_do: str) -> NoReturn:
    """Fail `modal <command>` with one line: not built, and what to use instead."""
    raise UnimplementedError(f"`modal {command}` is not built yet in modal-ray. {what_to_do}")
