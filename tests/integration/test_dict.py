"""`modal.Dict` on a real local Ray: the API, sharing with remote functions, durability when the
actor is killed, TTL, and the object lifecycle (named, ephemeral, `objects`, deprecated
spellings)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import pytest
import ray

import modal
from modal.exception import AlreadyExistsError, DeprecationError, NotFoundError

app = modal.App("test-dict")


@app.function(cpu=0.25)
def remote_write(d: modal.Dict, key: str) -> list[str]:
    d[key] = {"from": "worker", "pid": os.getpid()}
    d.put("modal-module", modal)
    d.put(d, "the dict itself as a key")
    return sorted(k for k in d if isinstance(k, str))


@app.function(cpu=0.25)
def remote_read(name: str) -> object:
    # A Dict looked up by name inside the worker, as a module-level global would be.
    return modal.Dict.from_name(name).get("from-driver")


@pytest.fixture(scope="module")
def running() -> Iterator[modal.App]:
    with app.run():
        yield app


@pytest.fixture(scope="module")
def shared_dict() -> Iterator[modal.Dict]:
    # One Dict (one actor) for the module; each test starts from it cleared.
    name = f"t-{uuid.uuid4().hex[:10]}"
    yield modal.Dict.from_name(name, create_if_missing=True).hydrate()
    modal.Dict.objects.delete(name, allow_missing=True)


@pytest.fixture
def d(shared_dict: modal.Dict) -> modal.Dict:
    shared_dict.clear()
    return shared_dict


def test_dict_api(d: modal.Dict) -> None:
    d["a"] = 1
    d[123] = [1, 2]
    d[("tuple", 1)] = None
    assert d["a"] == 1
    assert d[123] == [1, 2]
    assert d[("tuple", 1)] is None
    assert "a" in d
    assert "zz" not in d
    assert d.contains(123)
    with pytest.raises(KeyError):
        d["missing"]
    assert d.get("missing") is None
    assert d.get("missing", 7) == 7
    assert d.put("a", 2, skip_if_exists=True) is False
    assert d["a"] == 1
    assert d.put("b", 2, skip_if_exists=True) is True
    d.update({"c": 3}, e=5)
    d.update([("f", 6)])
    assert len(d) == d.len() == 7
    assert d.pop("f") == 6
    assert d.pop("f", "gone") == "gone"
    with pytest.raises(KeyError):
        d.pop("f")
    del d["e"]
    assert sorted(map(str, d.keys())) == sorted(["a", "123", "('tuple', 1)", "b", "c"])
    assert sorted(map(str, d.values())) == sorted(["1", "[1, 2]", "None", "2", "3"])
    assert dict(d.items())["c"] == 3
    # Mutating a retrieved value does not write back (DCT-08).
    d["nested"] = {"inner": 1}
    d["nested"]["inner"] = 2
    assert d["nested"] == {"inner": 1}
    info = d.info()
    assert info.name == d.name
    assert info.created_at is not None
    d.clear()
    assert d.len() == 0
    assert list(d.keys()) == []


def test_dict_aio(d: modal.Dict) -> None:
    async def main() -> None:
        assert await d.put.aio("k", "v") is True
        assert await d.get.aio("k") == "v"
        assert await d.contains.aio("k")
        await d.update.aio({"x": 1})
        assert await d.len.aio() == 2
        assert [k async for k in d.keys.aio()] != []
        assert dict([kv async for kv in d.items.aio()]) == {"k": "v", "x": 1}
        assert await d.pop.aio("x") == 1
        await d.clear.aio()
        assert await d.len.aio() == 0
        assert (await d.info.aio()).name == d.name

    asyncio.run(main())


def test_many_entries_iterate_in_pages(d: modal.Dict) -> None:
    d.update({i: str(i) for i in range(2500)})
    assert d.len() == 2500
    assert sorted(d.keys()) == list(range(2500))


def test_shared_with_remote_functions_both_ways(running: modal.App, d: modal.Dict) -> None:
    d["from-driver"] = {"x": 1}
    assert remote_read.remote(d.name) == {"x": 1}
    keys = remote_write.remote(d, "from-worker")
    assert keys == ["from-driver", "from-worker", "modal-module"]
    assert d["from-worker"]["from"] == "worker"
    assert d["modal-module"].Dict is modal.Dict
    assert d[d] == "the dict itself as a key"
    # Modal objects as values: a Queue stored in a Dict is a live reference.
    with modal.Queue.ephemeral() as q:
        q.put("through a dict")
        d["q"] = q
        assert d["q"].get(timeout=5) == "through a dict"


def test_missing_named_dict_raises_not_found() -> None:
    missing = modal.Dict.from_name(f"missing-{uuid.uuid4().hex[:8]}")  # lazy: no error yet
    with pytest.raises(NotFoundError, match="create_if_missing=True"):
        missing["x"]
    with pytest.raises(NotFoundError):
        missing.hydrate()


def test_objects_create_list_delete() -> None:
    name = f"objs-{uuid.uuid4().hex[:8]}"
    modal.Dict.objects.create(name)
    with pytest.raises(AlreadyExistsError):
        modal.Dict.objects.create(name)
    modal.Dict.objects.create(name, allow_existing=True)
    names = [x.name for x in modal.Dict.objects.list()]
    assert name in names
    assert modal.Dict.objects.list(max_objects=1)[0].name is not None
    modal.Dict.from_name(name)["k"] = "v"
    modal.Dict.objects.delete(name)
    assert name not in [x.name for x in modal.Dict.objects.list()]
    with pytest.raises(NotFoundError):
        modal.Dict.from_name(name).get("k")
    with pytest.raises(NotFoundError):
        modal.Dict.objects.delete(name)
    modal.Dict.objects.delete(name, allow_missing=True)


def test_deprecated_spellings_warn() -> None:
    name = f"old-{uuid.uuid4().hex[:8]}"
    with pytest.warns(DeprecationError, match="from_name"):
        d = modal.Dict.lookup(name, {"seed": 1}, create_if_missing=True)
    assert d["seed"] == 1
    with pytest.warns(DeprecationError, match="objects.delete"):
        modal.Dict.delete(name)
    assert name not in [x.name for x in modal.Dict.objects.list()]


def test_ephemeral_sync_and_async() -> None:
    with modal.Dict.ephemeral() as d:
        d["k"] = "v"
        assert d["k"] == "v"
        assert d.name is None
        assert modal.Dict.from_id(d.object_id)["k"] == "v"
    with pytest.raises(NotFoundError, match="ephemeral"):
        d["k"]

    async def main() -> None:
        async with modal.Dict.ephemeral() as ad:
            await ad.put.aio("k", 1)
            assert await ad.get.aio("k") == 1

    asyncio.run(main())


def test_items_survive_actor_kill(d: modal.Dict) -> None:
    d.update({f"k{i}": i for i in range(100)})
    d["obj"] = {"nested": [1, 2, 3]}
    actor = ray.get_actor(f"modal-dict.{d.name}", namespace="modal-main")
    ray.kill(actor)  # no_restart=True: the next call must re-create it from the file
    assert d["obj"] == {"nested": [1, 2, 3]}
    assert d.len() == 101
    assert dict(d.items()) == {**{f"k{i}": i for i in range(100)}, "obj": {"nested": [1, 2, 3]}}
    # A fresh reference (as another process would make) sees the same.
    assert modal.Dict.from_name(d.name).get("k42") == 42


def test_an_actor_of_an_older_version_is_replaced_over_the_same_file() -> None:
    # A long-lived cluster may still run a Dict's actor started by an older modal-ray.
    name = f"old-actor-{uuid.uuid4().hex[:8]}"
    d = modal.Dict.from_name(name, create_if_missing=True)
    try:
        d["k"] = "kept"
        actor_name = f"modal-dict.{name}"
        ray.kill(ray.get_actor(actor_name, namespace="modal-main"))

        @ray.remote(num_cpus=0)
        class OlderServer:
            def get(self, *args: object) -> None:
                return None

        older = OlderServer.options(
            name=actor_name, namespace="modal-main", lifetime="detached"
        ).remote()
        ray.get(older.get.remote())
        assert d["k"] == "kept"
        assert modal.Dict.from_name(name).len() == 1
    finally:
        modal.Dict.objects.delete(name)


def test_entries_expire_after_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    # MODAL_RAY_DICT_TTL shortens the 7-day TTL for a Dict's actor created afterwards.
    monkeypatch.setenv("MODAL_RAY_DICT_TTL", "1")
    name = f"ttl-{uuid.uuid4().hex[:8]}"
    d = modal.Dict.from_name(name, create_if_missing=True)
    try:
        d["short"] = "lived"
        assert d["short"] == "lived"
        import time

        time.sleep(1.6)
        assert d.get("short") is None
        assert "short" not in d
        assert d.len() == 0
    finally:
        modal.Dict.objects.delete(name)
