"""Serve configs built on several threads at once (our deploys beside Serve's router thread)."""

from __future__ import annotations

import threading

import modal_ray.backends.ray.serve  # noqa: F401 - installs the workaround it documents


def test_router_configs_can_be_built_on_many_threads_at_once() -> None:
    from ray.serve.config import RequestRouterConfig

    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def build() -> None:
        start.wait()
        try:
            for _ in range(300):
                RequestRouterConfig()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:1]
