"""Serve's request router for sessioned Servers: each session stays on one replica.

The gateway (`serve_adapters.sessions`) puts a session's routing key in Serve's session header
(`x-session-id`, or whatever `RAY_SERVE_SESSION_ID_HEADER_KEY` names); Serve's proxy hands it to
the deployment's router as `metadata.session_id`. This router pins a key to a replica the
first time it sees it (the replica holding the fewest pinned sessions, so sessions spread over
the replicas), and keeps it there while that replica is in the deployment's replica set, however
the set grows. When the replica leaves the set (it died, or the autoscaler removed it), the
session moves to another replica on its next request. A request whose replica is busy waits for
it (no fallback), which is what "sticky" promises.

Requests without a key (calls that are not through the gateway) are spread as Serve's
consistent-hash router spreads them. It is the parent class: its routing loop keeps the request a
routing task popped until that request has a replica, which a strict per-request choice needs.

Used only by sessioned Servers' deployments (`request_router_config`), so other endpoints keep
Serve's default router. The pins live in the router of each proxy (or handle) process; the key's
suffix `.<idle_timeout>` bounds how long an unused pin is kept (the gateway ends sessions; a pin
only outlives its session for a while, then is dropped).
"""

from __future__ import annotations

import time
from typing import Any

from ray.serve.experimental.consistent_hash_router import ConsistentHashRouter

# Pins unused for this long past their session's idle timeout are dropped: by then the gateway
# has ended the session (a request in flight keeps a session alive, but not its pin's clock).
_PIN_SLACK_S = 3600.0
_PRUNE_EVERY_S = 30.0


def _idle_timeout(key: str) -> float:
    _, _, tail = key.rpartition(".")
    return float(tail) if tail.isdigit() else 600.0


class StickySessionRouter(ConsistentHashRouter):  # type: ignore[misc]
    """Pins each session key to one live replica (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pins: dict[str, Any] = {}  # session key -> ReplicaID
        self._seen: dict[str, float] = {}
        self._pruned_at = time.monotonic()

    def update_replicas(self, replicas: list[Any]) -> None:
        super().update_replicas(replicas)
        live = set(self._replica_id_set)
        for key in [k for k, r in self._pins.items() if r not in live]:
            del self._pins[key]  # its next request goes to another replica
            self._seen.pop(key, None)

    def _prune(self, now: float) -> None:
        if now - self._pruned_at < _PRUNE_EVERY_S:
            return
        self._pruned_at = now
        for key, seen in list(self._seen.items()):
            if now - seen > _idle_timeout(key) + _PIN_SLACK_S:
                self._pins.pop(key, None)
                del self._seen[key]

    async def choose_replicas(
        self, candidate_replicas: list[Any], pending_request: Any = None
    ) -> list[list[Any]]:
        key = pending_request.metadata.session_id if pending_request is not None else ""
        if not key or not candidate_replicas:
            result: list[list[Any]] = await super().choose_replicas(
                candidate_replicas, pending_request
            )
            return result
        pending_request.routing_context.should_backoff = True
        now = time.monotonic()
        self._prune(now)
        self._seen[key] = now
        by_id = {r.replica_id: r for r in candidate_replicas}
        pinned = self._pins.get(key)
        if pinned in by_id:
            return [[by_id[pinned]]]
        load: dict[Any, int] = dict.fromkeys(by_id, 0)
        for replica_id in self._pins.values():
            if replica_id in load:
                load[replica_id] += 1
        # Fewest sessions first; ties broken by the replicas' ids, so placement is repeatable.
        chosen = min(by_id, key=lambda r: (load[r], r.unique_id))
        self._pins[key] = chosen
        return [[by_id[chosen]]]


__all__ = ["StickySessionRouter"]
