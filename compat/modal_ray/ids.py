"""Object ids in Modal's spelling (`fc-...`, `ap-...`), random and URL-safe."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(11)}"
