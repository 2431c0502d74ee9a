"""The rules of durable spawned calls (`CallsServer`), in-process, without Ray: submit, outcome,
cancel with the calls below, the call graph, retention (7 days: expired, then unknown)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from modal_ray.exception import NotFoundError
from modal_ray.storage.calls_server import RETENTION_S, CallsServer


def _server(tmp_path: Path, **kwargs: float) -> CallsServer:
    return CallsServer(tmp_path / "calls" / "main.sqlite", **kwargs)


def _call(server: CallsServer, method: str, *args: object) -> object:
    return server.call(method, True, args)


def test_submit_finish_outcome_and_idempotence(tmp_path: Path) -> None:
    s = _server(tmp_path)
    meta = {"app_id": "ap-1", "function_name": "f", "module_name": "m"}
    assert _call(s, "submit", "d1", b"target", meta, [("fc-1", b"a1"), ("fc-2", b"a2")]) == [
        "fc-1",
        "fc-2",
    ]
    # A retried request adds nothing; a known target needs no blob.
    assert _call(s, "submit", "d1", None, meta, [("fc-1", b"a1")]) == []
    with pytest.raises(NotFoundError):
        _call(s, "submit", "unknown", None, meta, [("fc-3", b"a3")])
    assert _call(s, "target", "d1") == b"target"
    assert _call(s, "outcome", "fc-1") == ("pending", None, "f")
    assert _call(s, "open_calls") == [("fc-1", "d1", b"a1"), ("fc-2", "d1", b"a2")]
    assert _call(s, "busy", "ap-1") == 2
    assert _call(s, "finish", "fc-1", "success", b"value") is True
    assert _call(s, "finish", "fc-1", "failure", b"late") is False  # written once
    assert _call(s, "outcome", "fc-1") == ("success", b"value", "f")
    assert _call(s, "busy", "ap-1") == 1
    with pytest.raises(NotFoundError, match="fc-nope"):
        _call(s, "outcome", "fc-nope")


def test_cancel_reaches_the_calls_below_and_wins_over_a_late_result(tmp_path: Path) -> None:
    s = _server(tmp_path)
    _call(s, "submit", "d", b"t", {"app_id": "ap-1", "function_name": "p"}, [("fc-p", b"")])
    child = {"app_id": "ap-1", "function_name": "c", "parent": "fc-p"}
    _call(s, "submit", "d", None, child, [("fc-c1", b""), ("fc-c2", b"")])
    grandchild = {"app_id": "ap-1", "function_name": "g", "parent": "fc-c1"}
    _call(s, "submit", "d", None, grandchild, [("fc-g", b"")])
    _call(s, "finish", "fc-c2", "success", b"ok")
    graph = _call(s, "graph", "fc-p")
    assert isinstance(graph, list)
    assert [(n["call_id"], n["parent"]) for n in graph] == [
        ("fc-p", None),
        ("fc-c1", "fc-p"),
        ("fc-c2", "fc-p"),
        ("fc-g", "fc-c1"),
    ]
    assert sorted(_call(s, "cancel", ["fc-p"])) == ["fc-c1", "fc-g", "fc-p"]  # type: ignore[type-var]
    assert _call(s, "finish", "fc-g", "success", b"late") is False
    assert _call(s, "outcome", "fc-g")[0] == "terminated"  # type: ignore[index]
    assert _call(s, "outcome", "fc-c2")[0] == "success"  # type: ignore[index]


def test_cancel_app_and_bound_calls(tmp_path: Path) -> None:
    s = _server(tmp_path)
    bound = {"app_id": "ap-run", "function_name": "f", "owner_job": "01000000"}
    _call(s, "submit", "d", b"t", bound, [("fc-1", b"")])
    _call(s, "submit", "d", None, {"app_id": "ap-deployed", "function_name": "f"}, [("fc-2", b"")])
    assert _call(s, "owned") == [("01000000", "ap-run")]
    assert _call(s, "cancel_app", "ap-run") == ["fc-1"]
    assert _call(s, "owned") == []
    assert _call(s, "outcome", "fc-2")[0] == "pending"  # type: ignore[index]


def test_results_expire_after_the_retention_then_the_id_is_unknown(tmp_path: Path) -> None:
    assert RETENTION_S == 7 * 24 * 3600  # Modal documents 7 days
    s = _server(tmp_path, retention_s=0.2, tombstone_s=0.3)
    _call(s, "submit", "d", b"t", {"app_id": "ap", "function_name": "f"}, [("fc-1", b"")])
    _call(s, "finish", "fc-1", "success", b"v")
    assert _call(s, "outcome", "fc-1") == ("success", b"v", "f")
    time.sleep(0.25)
    # Expired as soon as it is read, before any upkeep; upkeep then drops the bytes.
    assert _call(s, "outcome", "fc-1") == ("expired", None, "f")
    assert _call(s, "expire") == 1
    assert _call(s, "outcome", "fc-1") == ("expired", None, "f")
    time.sleep(0.3)
    _call(s, "expire")
    with pytest.raises(NotFoundError):
        _call(s, "outcome", "fc-1")
    with pytest.raises(NotFoundError):  # the target went with its last call
        _call(s, "target", "d")


def test_state_survives_a_new_server_on_the_same_file(tmp_path: Path) -> None:
    s = _server(tmp_path)
    _call(s, "submit", "d", b"t", {"app_id": "ap", "function_name": "f"}, [("fc-1", b"args")])
    again = _server(tmp_path)  # a restarted keeper
    assert _call(again, "open_calls") == [("fc-1", "d", b"args")]
