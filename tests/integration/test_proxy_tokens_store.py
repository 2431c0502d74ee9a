"""Proxy tokens live in the state store: a token table sees tokens that another Ray using the
same store created (an embedded `modal serve` and a `modal workspace proxy-tokens create` run
next to it each start their own Ray)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import ray

from modal_ray import config
from modal_ray.backends.ray.web import (
    GATEWAY_NAMESPACE,
    TOKENS_NAME,
    _TokenActor,
    _verify_token,
)


def test_a_token_created_by_another_table_on_the_same_store_is_valid(tmp_path: Path) -> None:
    path = str(tmp_path / "proxy-tokens.json")
    serving = _TokenActor.remote(path)  # type: ignore[attr-defined]
    assert ray.get(serving.call.remote("list", ())) == []
    other = _TokenActor.remote(path)  # type: ignore[attr-defined]
    try:
        token_id, secret = ray.get(other.call.remote("create", ()))
        assert ray.get(serving.call.remote("verify", (token_id, secret))) is True
        assert ray.get(serving.call.remote("verify", (token_id, "ws-wrong"))) is False
        # A change made through either table reaches the other; neither loses the other's.
        assert ray.get(serving.call.remote("revoke", (token_id,))) is True
        assert ray.get(other.call.remote("verify", (token_id, secret))) is False
        second, _ = ray.get(other.call.remote("create", ()))
        listed = ray.get(serving.call.remote("list", ()))
        assert [r["token_id"] for r in listed] == [token_id, second]
    finally:
        ray.kill(serving)
        ray.kill(other)


def _kill_named_table() -> None:
    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor(TOKENS_NAME, namespace=GATEWAY_NAMESPACE))


def test_a_replica_checks_tokens_of_the_store_before_anyone_made_a_table_here() -> None:
    """A `modal serve` whose Ray never ran a proxy-tokens command still accepts a token that
    such a command (on its own Ray) put in the state store."""
    _kill_named_table()
    other = _TokenActor.remote(str(config.state_root() / "proxy-tokens.json"))  # type: ignore[attr-defined]
    try:
        token_id, secret = ray.get(other.call.remote("create", ()))
        assert asyncio.run(_verify_token(token_id, secret)) is True
        assert asyncio.run(_verify_token(token_id, "ws-wrong")) is False
        # The session's store is shared with later tests: leave no token in it.
        assert ray.get(other.call.remote("delete", (token_id,))) is True
    finally:
        ray.kill(other)
        _kill_named_table()
