"""Per-test cleanup for the integration tests: what a test created on the shared Ray goes when
the test ends, as Ray Serve's own `serve_instance` fixture deletes every application after each
test.

Two kinds of objects outlive a test if nothing removes them:

- Serve applications (container pools, named `modal-<env>-ap-<id>-...`). An app run deletes its
  own pools when it stops, so only pools of a run that is no longer running are leftovers; a run
  kept open for a whole module (a module-scoped `with app.run()` fixture) keeps its pools until
  the module ends.
- Named Dicts and Queues (detached actors `modal-dict.<name>` / `modal-queue.<name>` in the
  namespace `modal-<env>`, with their data on disk). Those first seen during the test are
  deleted with `modal.Dict.objects.delete` / `modal.Queue.objects.delete` (actor and data), and
  any of those actors still alive after that is killed.

Only what appeared during the test is touched: objects made by module- or session-scoped
fixtures exist before it starts, and modal-ray's own system actors (the call tracker
`modal-ray-calls`, the janitor in `modal-ray-system`) are never touched. Serve is never started
here: with no Serve controller there is nothing to list.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

NAMESPACE_PREFIX = "modal-"
STORE_KINDS = {"dict": "Dict", "queue": "Queue"}


def _serve_running() -> bool:
    import ray

    try:
        ray.get_actor("SERVE_CONTROLLER_ACTOR", namespace="serve")
    except ValueError:
        return False
    return True


def serve_apps() -> set[str]:
    """Names of the Serve applications on the cluster (empty when Serve is not running)."""
    if not _serve_running():
        return set()
    from ray import serve

    return set(serve.status().applications)


def named_objects() -> set[tuple[str, str]]:
    """(namespace, actor name) of the live actors of named Dicts and Queues, every environment."""
    import ray

    return {
        (a["namespace"], a["name"])
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"].startswith(NAMESPACE_PREFIX) and _store_object(a["name"]) is not None
    }


def _store_object(name: str) -> tuple[str, str] | None:
    """(kind, object name) of a named Dict/Queue actor name; None for anything else."""
    head, sep, rest = name.partition(".")
    kind = head.removeprefix("modal-")
    if sep and head.startswith("modal-") and kind in STORE_KINDS:
        return kind, rest
    return None


def running_app_ids(candidates: Iterable[Any]) -> set[str]:
    """App ids of the `modal.App`s among `candidates` that are running now."""
    import modal

    ids = set()
    for obj in candidates:
        if isinstance(obj, modal.App) and obj.app_id and obj.info().state == "running":
            ids.add(obj.app_id)
    return ids


def remove_serve_apps(names: Iterable[str], keep_app_ids: set[str]) -> list[str]:
    """Delete the given Serve applications except the pools of the runs in `keep_app_ids`
    (a pool's name holds its run's app id: `modal-<env>-<app id>-<tag>-<digest>`)."""
    from ray import serve

    removed = []
    for name in sorted(names):
        if any(f"-{app_id}-" in name for app_id in keep_app_ids):
            continue
        serve.delete(name)
        removed.append(name)
    return removed


def remove_named_objects(created: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Delete the named Dicts/Queues behind `created` actors, then kill what is left of them."""
    import ray

    import modal

    created = set(created)
    for namespace, name in sorted(created):
        found = _store_object(name)
        if found is None:
            continue
        kind, object_name = found
        manager = getattr(modal, STORE_KINDS[kind]).objects
        environment = namespace.removeprefix(NAMESPACE_PREFIX)
        with contextlib.suppress(Exception):  # a test may have left it broken on purpose
            manager.delete(object_name, allow_missing=True, environment_name=environment)
    for namespace, name in sorted(created & named_objects()):
        with contextlib.suppress(ValueError):
            ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
    return sorted(created)


@pytest.fixture(autouse=True)
def cleanup_after_test(request: pytest.FixtureRequest, ray_session: None) -> Iterator[None]:
    """Remove the Serve applications and named Dicts/Queues a test created (see module doc)."""
    apps_before = serve_apps()
    actors_before = named_objects()
    yield
    new_apps = serve_apps() - apps_before
    if new_apps:
        candidates = list(vars(request.module).values()) + list(request.node.funcargs.values())
        remove_serve_apps(new_apps, running_app_ids(candidates))
    new_actors = named_objects() - actors_before
    if new_actors:
        remove_named_objects(new_actors)
