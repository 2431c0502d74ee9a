"""Paths in the state store (`MODAL_RAY_STATE`, default `~/.modal-ray/`) and safe file writes.

Layout (documented in docs/operations.md):
    secrets/<environment>/<name>.json   one named Secret, file mode 0600
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from modal_ray.exception import InvalidError

from . import config

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_object_name(name: str, kind: str) -> str:
    """Modal's name rules: at most 64 characters of letters, digits, '-', '_' and '.'."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidError(
            f"Invalid {kind} name {name!r}: use 1 to 64 letters, digits, '-', '_' or '.',"
            " starting with a letter or digit."
        )
    return name


def secrets_dir(environment: str) -> Path:
    return config.state_root() / "secrets" / environment


def write_json_private(path: Path, data: Any) -> None:
    """Atomically write JSON readable only by the owner (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)
