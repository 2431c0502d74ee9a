"""Client- and worker-side configuration: typed readers over the user's settings, and the
variables modal-ray sets for its own workers.

User settings (every `MODAL_RAY_*` variable, `MODAL_ENVIRONMENT`, `MODAL_TRACEBACK`) are
declared, validated and documented once in `modal_ray.settings`; `settings()` returns them as
they are now, and the functions below derive what callers need (defaults that depend on the
machine, an explicit environment name over `MODAL_ENVIRONMENT`). `docs/operations.md`
("Configuration") lists each one.

Internal handoff variables are set by modal-ray in its workers' environment and read back
there; users do not set them:

- `APP_ID_ENV` (`MODAL_RAY_APP_ID`): the app id of the run an input belongs to (set around
  each input by the function layer; host files are claimed by it).

`modal_ray.settings` imports pydantic; it is imported on the first read, so that `import modal`
stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from modal_ray.exception import InvalidError

if TYPE_CHECKING:
    from modal_ray.settings import Settings

DEFAULT_ENVIRONMENT = "main"

# Internal handoff variables (driver -> worker). Not user settings.
APP_ID_ENV = "MODAL_RAY_APP_ID"
INTERNAL_ENV = (APP_ID_ENV,)


def settings() -> Settings:
    """The user's settings from this process's environment now (`InvalidError` on a bad value)."""
    from modal_ray.settings import current

    return current()


def ray_address() -> str | None:
    return settings().address


def connect_timeout() -> float:
    """How long the first connection to a cluster at an address may take, in seconds."""
    return settings().connect_timeout


def environment_name(explicit: str | None = None) -> str:
    if not explicit:
        return settings().environment
    from modal_ray.settings import ENVIRONMENT_NAME_RULE, valid_environment_name

    if not valid_environment_name(explicit):
        raise InvalidError(f"Invalid environment name {explicit!r}: use {ENVIRONMENT_NAME_RULE}.")
    return explicit


def namespace_for(environment: str) -> str:
    return f"modal-{environment}"


def state_root() -> Path:
    return settings().state or Path.home() / ".modal-ray"


def embedded_num_cpus() -> float | None:
    return settings().num_cpus


def embedded_num_gpus() -> float | None:
    return settings().num_gpus


def packages_mode() -> str:
    return settings().packages


def check_feasible() -> bool:
    return settings().check_feasible


def ship_source() -> bool | None:
    """Ship the function's source as `py_modules`: always (True), never (False), or only on a
    cluster reached by address (None)."""
    return settings().ship_source


def show_traceback() -> bool:
    """`MODAL_TRACEBACK`. Used while an error is shown, so it never raises: with a bad setting
    the error being shown is (or will be) the `InvalidError` that names it."""
    try:
        return settings().traceback
    except InvalidError:
        return False
