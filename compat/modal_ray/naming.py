"""Names that the core makes and the backend reads back: app ids, call ids, run prefixes and
container-pool names. Both sides import this module, so a name is built and parsed in one place.

Grammar (`<hex>` is 22 lowercase hex digits from `ids.new_id`):

    app_id      = "ap-" <hex>            (or "ap-local": code in no app run, e.g. a bare worker)
    call_id     = "fc-" <hex>
    run_prefix  = "modal-" <environment> "-" <app_id> "-"
    pool_name   = <run_prefix> <safe tag> "-" <digest>

- `<environment>` follows `settings.ENVIRONMENT_NAME_RULE` (letters, digits, '-', '_', '.').
- `<safe tag>` is the function or class tag with every character that is not alphanumeric
  replaced by '-'; `<digest>` is 10 hex digits of the sha256 of the pool's parameter set and
  variant, so every process of one app run (the driver and its workers) computes the same name
  for the same pool.

Invariants:
- every pool of a run starts with that run's prefix, so stopping a run (or the janitor, when its
  driver died) finds all of its pools by prefix;
- `run_prefix_of(pool_name(env, app_id, ...)) == run_prefix(env, app_id)`; the app id is found
  at the first "-ap-" after "modal-", so an environment name must not contain "-ap-".
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from .ids import new_id

APP_ID_PREFIX = "ap"
CALL_ID_PREFIX = "fc"
LOCAL_APP_ID = "ap-local"
POOL_PREFIX = "modal-"
DIGEST_LEN = 10


def new_app_id() -> str:
    return new_id(APP_ID_PREFIX)


def new_call_id() -> str:
    return new_id(CALL_ID_PREFIX)


def is_call_id(value: str) -> bool:
    return value.startswith(f"{CALL_ID_PREFIX}-") and len(value) > len(CALL_ID_PREFIX) + 1


def run_prefix(environment: str, app_id: str | None) -> str:
    """What the names of an app run's container pools start with."""
    return f"{POOL_PREFIX}{environment}-{app_id or LOCAL_APP_ID}-"


def pool_name(
    environment: str, app_id: str | None, tag: str, params: Mapping[str, Any], variant: str
) -> str:
    """The deterministic name of the container pool of `tag` for a parameter set and variant."""
    digest = hashlib.sha256(repr((sorted(params.items()), variant)).encode()).hexdigest()
    safe = "".join(c if c.isalnum() else "-" for c in tag)
    return f"{run_prefix(environment, app_id)}{safe}-{digest[:DIGEST_LEN]}"


def parse_run_prefix(name: str) -> tuple[str, str]:
    """(environment, app_id) of a pool name or run prefix (`modal-<env>-ap-<hex>-...`)."""
    if not name.startswith(POOL_PREFIX):
        raise ValueError(f"{name!r} is not a modal-ray pool name (it must start with 'modal-').")
    head, sep, rest = name[len(POOL_PREFIX) :].partition(f"-{APP_ID_PREFIX}-")
    if not sep:
        raise ValueError(f"{name!r} is not a modal-ray pool name (it has no '-ap-<id>').")
    return head, f"{APP_ID_PREFIX}-{rest.split('-', 1)[0]}"


def run_prefix_of(name: str) -> str:
    """The run prefix of a pool name: what `stop_services` and the janitor match on."""
    return run_prefix(*parse_run_prefix(name))
