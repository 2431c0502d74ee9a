"""Sticky sessions of `@modal.sessioned()` Servers, at the web gateway.

Modal's scheme, kept as is: a client starts a session with `Server.sessions.start(idle_timeout=)`
and gets a token; every request of the session carries `Modal-Authorization: Bearer <token>`;
requests with the same token reach the same container while the session lives. A sessioned
Server refuses requests without a live token (401). A session ends when it is terminated
(`Server.sessions.terminate(token)`) or when no request of it has been in flight for
`idle_timeout` seconds.

Split of the work:
- `SessionTable` (here, in the gateway's process) owns the tokens: it checks them, counts the
  requests in flight and expires idle sessions. The token never leaves the gateway: the
  request goes on with a routing key in its place, in the engine's session header
  (`session_header`, e.g. Serve's `x-session-id`), a random id per session.
- The engine's router (the backend's) pins each routing key to one replica the first time it
  sees it, and moves it to another replica only when that one is gone.

A client's own value of the session header is dropped on a sessioned route (it cannot pick a
session's replica itself). Unlike Modal, a container is not kept alive by the sessions it holds:
when the autoscaler removes it, its sessions move to another container.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .proxy import Receive, Scope, Send, send_text

AUTH_HEADER = "modal-authorization"
DEFAULT_IDLE_TIMEOUT = 600.0


@dataclass
class _Session:
    key: str  # the routing key sent to the engine in place of the token
    idle_timeout: float
    last_active: float
    in_flight: int = 0


@dataclass
class SessionTable:
    """The live sessions of one sessioned Server, by token."""

    clock: Callable[[], float] = time.monotonic
    _sessions: dict[str, _Session] = field(default_factory=dict)

    def start(self, idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> str:
        """A new session; its token."""
        self._expire()
        token = secrets.token_urlsafe(24)
        key = f"{secrets.token_hex(12)}.{int(idle_timeout)}"
        self._sessions[token] = _Session(key, float(idle_timeout), self.clock())
        return token

    def terminate(self, token: str) -> bool:
        """End a session now; False if there was no such live session."""
        return self._sessions.pop(token, None) is not None

    def __len__(self) -> int:
        self._expire()
        return len(self._sessions)

    def _live(self, token: str) -> _Session | None:
        session = self._sessions.get(token)
        if session is None:
            return None
        if session.in_flight == 0 and self.clock() - session.last_active > session.idle_timeout:
            del self._sessions[token]
            return None
        return session

    def _expire(self) -> None:
        for token in list(self._sessions):
            self._live(token)

    def begin(self, token: str) -> str | None:
        """A request of the session `token` starts: its routing key, or None if the session is
        not live."""
        session = self._live(token)
        if session is None:
            return None
        session.in_flight += 1
        session.last_active = self.clock()
        return session.key

    def end(self, token: str) -> None:
        session = self._sessions.get(token)
        if session is not None:
            session.in_flight = max(0, session.in_flight - 1)
            session.last_active = self.clock()


def token_of(scope: Scope) -> str | None:
    """The session token a request carries (`Modal-Authorization: Bearer <token>`)."""
    for k, v in scope.get("headers") or ():
        if k.decode("latin-1").lower() == AUTH_HEADER:
            scheme, _, token = v.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


class SessionGate:
    """ASGI middleware in front of a sessioned Server's route: refuses requests without a live
    session (401) and hands the others on with their session's routing key."""

    def __init__(
        self, app: Callable[[Scope, Receive, Send], Awaitable[None]], session_header: str
    ) -> None:
        self.app = app
        self.table = SessionTable()
        self.session_header = session_header.lower()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        token = token_of(scope)
        key = self.table.begin(token) if token is not None else None
        if key is None:
            await self._refuse(scope, receive, send, token is not None)
            return
        own = self.session_header.encode("latin-1")
        headers = [(k, v) for k, v in scope.get("headers") or () if k.lower() != own]
        headers.append((own, key.encode("latin-1")))
        try:
            await self.app({**scope, "headers": headers}, receive, send)
        finally:
            assert token is not None
            self.table.end(token)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, had_token: bool) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.close", "code": 1008})  # policy violation
            return
        why = (
            "The session of this token has ended (terminated, or idle past its idle_timeout)."
            if had_token
            else "This Server uses sticky sessions (`@modal.sessioned()`)."
        )
        await send_text(
            send,
            401,
            f"{why} Start a session with `modal.Server.sessions.start()` and send its token as"
            " `Modal-Authorization: Bearer <token>`.",
            {"www-authenticate": "Bearer"},
        )


__all__ = ["AUTH_HEADER", "DEFAULT_IDLE_TIMEOUT", "SessionGate", "SessionTable", "token_of"]
