"""Proxy auth (`requires_proxy_auth=True`): the token rules and the ASGI check.

A proxy token is an id (`wk-...`) and a secret (`ws-...`); clients send them as the `Modal-Key`
and `Modal-Secret` headers. `TokenTable` keeps tokens as records (the secret only as its
SHA-256), engine-neutral: the backend hosts one table for the whole cluster and persists its
records. `ProxyAuth` answers 401 to a request without a valid pair; a valid pair is remembered
for `CACHE_S` seconds, so a revocation takes effect within that time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .proxy import Receive, Scope, Send, send_text

CACHE_S = 2.0
KEY_HEADER = b"modal-key"
SECRET_HEADER = b"modal-secret"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenTable:
    """Proxy tokens: `records` is what the host persists (id -> record)."""

    def __init__(self, records: dict[str, dict[str, Any]] | None = None) -> None:
        self.records: dict[str, dict[str, Any]] = dict(records or {})

    def create(self) -> tuple[str, str]:
        token_id = "wk-" + secrets.token_urlsafe(16)
        secret = "ws-" + secrets.token_urlsafe(32)
        self.records[token_id] = {
            "sha256": _digest(secret),
            "created_at": time.time(),
            "revoked_at": None,
        }
        return token_id, secret

    def list(self) -> list[dict[str, Any]]:
        return [
            {"token_id": k, "created_at": r["created_at"], "revoked_at": r["revoked_at"]}
            for k, r in sorted(self.records.items(), key=lambda kv: kv[1]["created_at"])
        ]

    def revoke(self, token_id: str) -> bool:
        record = self.records.get(token_id)
        if record is None:
            return False
        if record["revoked_at"] is None:
            record["revoked_at"] = time.time()
        return True

    def delete(self, token_id: str) -> bool:
        return self.records.pop(token_id, None) is not None

    def verify(self, token_id: str, secret: str) -> bool:
        record = self.records.get(token_id)
        if record is None or record["revoked_at"] is not None:
            return False
        return hmac.compare_digest(record["sha256"], _digest(secret))


class ProxyAuth:
    """401 unless the request carries a valid `Modal-Key` / `Modal-Secret` pair."""

    def __init__(self, app: Any, verify: Callable[[str, str], Awaitable[bool]]) -> None:
        self.app = app
        self._verify = verify
        self._valid: dict[tuple[str, str], float] = {}  # pair -> valid until (monotonic)

    async def _allowed(self, scope: Scope) -> bool:
        headers = dict(scope.get("headers") or [])
        key = headers.get(KEY_HEADER, b"").decode("latin-1")
        secret = headers.get(SECRET_HEADER, b"").decode("latin-1")
        if not key or not secret:
            return False
        now = time.monotonic()
        until = self._valid.get((key, secret))
        if until is not None and until > now:
            return True
        try:
            ok = await self._verify(key, secret)
        except Exception:
            ok = False
        if ok:
            if len(self._valid) > 10_000:
                self._valid.clear()
            self._valid[(key, secret)] = now + CACHE_S
        else:
            self._valid.pop((key, secret), None)
        return ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not await self._allowed(scope):
            if scope["type"] == "http":
                await send_text(
                    send, 401, "Missing or invalid Modal-Key / Modal-Secret proxy auth headers."
                )
            else:
                await receive()
                await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(scope, receive, send)
