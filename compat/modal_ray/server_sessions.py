"""`Server.sessions`: start and terminate sticky sessions of a `@modal.sessioned()` Server.

`start(idle_timeout=600)` gives a session whose `token` goes on every request of the session as
`Modal-Authorization: Bearer <token>`; such requests reach one container while the session
lives. The tokens live at the web gateway (`serve_adapters.sessions`); this is the client's
side, through the backend's `server_session`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modal_ray.exception import InvalidError, NotFoundError

from .synchronizer import dual

if TYPE_CHECKING:
    from .server import Server

DEFAULT_IDLE_TIMEOUT = 600


@dataclass(frozen=True, slots=True)
class ServerSession:
    """A sticky session of a Server: send `token` as `Modal-Authorization: Bearer <token>`."""

    token: str
    idle_timeout: int


class ServerSessions:
    """The sticky sessions of one sessioned Server (`Server.sessions`)."""

    def __init__(self, server: Server) -> None:
        self._server = server

    def __repr__(self) -> str:
        return f"{self._server!r}.sessions"

    def _name(self) -> str:
        from modal_ray.backends import get_backend

        server = self._server
        if not server._web.sessioned:
            raise InvalidError(
                f"{server!r} has no sticky sessions: decorate its class with"
                " `@modal.sessioned()` (under `@app.server(...)`) to use `Server.sessions`."
            )
        ctx = server._cls._run_context()
        if not ctx.running and not ctx.app_id:
            raise NotFoundError(
                f"{server!r} is not being served: run its app (`modal serve`, `modal deploy` or"
                " `app.run()`) before starting sessions."
            )
        get_backend().connect(ctx.environment)
        return server._pool().service.name

    @dual
    async def start(self, *, idle_timeout: int = DEFAULT_IDLE_TIMEOUT) -> ServerSession:
        """A new session; it ends when terminated or after `idle_timeout` seconds without a
        request in flight."""
        from modal_ray.backends import get_backend

        if isinstance(idle_timeout, bool) or not isinstance(idle_timeout, int) or idle_timeout < 1:
            raise InvalidError(
                f"Invalid idle_timeout={idle_timeout!r}: expected whole seconds, at least 1."
            )
        name = await asyncio.get_running_loop().run_in_executor(None, self._name)
        token = await asyncio.get_running_loop().run_in_executor(
            None, get_backend().server_session, name, "start", idle_timeout
        )
        if token is None:
            raise NotFoundError(
                f"{self._server!r} is not being served: run or deploy its app before starting"
                " sessions."
            )
        return ServerSession(str(token), idle_timeout)

    @dual
    async def terminate(self, token: str) -> bool:
        """End the session of `token` now (its next request is refused with 401); whether it
        was live."""
        from modal_ray.backends import get_backend

        if isinstance(token, ServerSession):
            token = token.token
        name = await asyncio.get_running_loop().run_in_executor(None, self._name)
        done = await asyncio.get_running_loop().run_in_executor(
            None, get_backend().server_session, name, "terminate", token
        )
        return bool(done)


__all__ = ["DEFAULT_IDLE_TIMEOUT", "ServerSession", "ServerSessions"]
