"""A map over a 1,000,000-input generator streams in bounded memory; progress shows under output."""

from __future__ import annotations

import os

import psutil
import pytest

import modal

app = modal.App("test-map-scale")


@app.function()
def inc(x: int) -> int:
    return x + 1


@pytest.fixture(scope="module")
def running():  # type: ignore[no-untyped-def]
    with app.run():
        yield app


def test_million_input_generator_streams_with_bounded_memory(running: modal.App) -> None:
    n = 1_000_000
    pulled = 0
    max_lead = 0

    def inputs():  # type: ignore[no-untyped-def]
        nonlocal pulled
        for i in range(n):
            pulled += 1
            yield i

    proc = psutil.Process(os.getpid())
    rss_before = proc.memory_info().rss
    rss_peak = rss_before
    consumed = 0
    total = 0
    for value in inc.map(inputs()):
        total += value
        consumed += 1
        if consumed % 10_000 == 0:
            max_lead = max(max_lead, pulled - consumed)
            rss_peak = max(rss_peak, proc.memory_info().rss)
    assert consumed == n
    assert total == n * (n + 1) // 2
    # The generator is never drained ahead of the results by more than the in-flight bound
    # (100,000 inputs, plus one chunk)...
    assert max_lead <= 102_000, max_lead
    # ...so the driver's memory does not grow with the number of inputs (1M ints as a list of
    # argument tuples alone would take well over 100 MiB).
    assert rss_peak - rss_before < 150 * 2**20, (rss_peak - rss_before) / 2**20


def test_map_progress_is_shown_with_enable_output(
    running: modal.App, capfd: pytest.CaptureFixture[str]
) -> None:
    with modal.enable_output():
        assert list(inc.map(range(300))) == list(range(1, 301))
    err = capfd.readouterr().err
    assert "inc map" in err
