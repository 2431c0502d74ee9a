"""The gateway's sticky-session rules (`serve_adapters.sessions`), without Ray."""

from __future__ import annotations

import asyncio
from typing import Any

from modal_ray.serve_adapters.sessions import SessionGate, SessionTable, token_of


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_session_ends_when_idle_past_its_timeout_but_not_while_a_request_runs() -> None:
    clock = Clock()
    table = SessionTable(clock=clock)
    token = table.start(idle_timeout=10)
    key = table.begin(token)
    assert key is not None
    assert table.begin("other") is None
    clock.now = 100.0  # a long request: the session stays
    assert table.begin(token) == key
    table.end(token)
    table.end(token)
    clock.now = 109.0
    assert table.begin(token) == key  # the same routing key while it lives
    table.end(token)
    clock.now = 120.0
    assert table.begin(token) is None
    assert len(table) == 0


def test_terminate_and_distinct_keys() -> None:
    table = SessionTable()
    a, b = table.start(), table.start()
    assert a != b
    assert table.begin(a) != table.begin(b)
    assert table.terminate(a) is True
    assert table.terminate(a) is False
    assert table.begin(a) is None


def _scope(*headers: tuple[str, str]) -> dict[str, Any]:
    return {"type": "http", "headers": [(k.encode(), v.encode()) for k, v in headers]}


def test_token_is_read_from_modal_authorization_bearer() -> None:
    assert token_of(_scope(("Modal-Authorization", "Bearer abc"))) == "abc"
    assert token_of(_scope(("modal-authorization", "bearer  abc "))) == "abc"
    assert token_of(_scope(("Modal-Authorization", "Basic abc"))) is None
    assert token_of(_scope(("Authorization", "Bearer abc"))) is None


def test_gate_refuses_without_a_session_and_replaces_the_clients_session_header() -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)

    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    gate = SessionGate(app, "X-Session-Id")
    asyncio.run(gate(_scope(("x-session-id", "mine")), receive, send))
    assert sent[0]["status"] == 401
    assert not seen
    token = gate.table.start()
    scope = _scope(("modal-authorization", f"Bearer {token}"), ("x-session-id", "mine"))
    asyncio.run(gate(scope, receive, send))
    keys = [v for k, v in seen[0]["headers"] if k == b"x-session-id"]
    assert len(keys) == 1
    assert keys[0] not in (b"mine", token.encode())
    assert gate.table._sessions[token].in_flight == 0
