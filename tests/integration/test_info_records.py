"""Info and stats records (`App.info`, `App.stats`, `Function.get_current_stats`, `Secret.info`,
`FunctionCall.get_call_graph`) are Modal's `modal.types` / `modal.call_graph` classes, made by the
core (issue 9 item 6: the core imports nothing from `modal`)."""

from __future__ import annotations

import modal
import modal.call_graph
import modal.types

app = modal.App("test-info-records")


@app.function()
def square(x: int) -> int:
    return x * x


def test_records_are_modal_types() -> None:
    with app.run():
        info = app.info()
        assert type(info) is modal.types.AppInfo
        assert info.state == "running"
        assert info.app_id == app.app_id
        stats = app.stats()
        assert type(stats) is modal.types.AppStats
        assert stats.num_functions == 1

        call = square.spawn(4)
        assert call.get() == 16
        graph = call.get_call_graph()
        assert [type(node) for node in graph] == [modal.call_graph.InputInfo]
        assert graph[0].status is modal.call_graph.InputStatus.SUCCESS
        assert graph[0].function_call_id == call.object_id
        assert graph[0].function_name == "square"
        assert repr(graph[0].status) == "<InputStatus.SUCCESS: 1>"

        current = square.get_current_stats()
        assert current == modal.types.FunctionStats(backlog=0, num_total_runners=0)


def test_secret_info_is_modal_secret_info() -> None:
    info = modal.Secret.from_dict({"A": "1"}).info()
    assert type(info) is modal.types.SecretInfo
    assert info.name is None
