"""The shape of `FunctionCall.get_call_graph()` results.

Defined in the core so the core needs nothing from the public package; both classes claim
`modal.call_graph` as their home, which re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class InputStatus(IntEnum):
    """Status of one input in a call graph."""

    PENDING = 0
    SUCCESS = 1
    FAILURE = 2
    INIT_FAILURE = 3
    TERMINATED = 4
    TIMEOUT = 5


@dataclass
class InputInfo:
    """One input of a function call and the calls it made."""

    input_id: str
    function_call_id: str
    task_id: str
    status: InputStatus
    function_name: str
    module_name: str
    children: list[InputInfo] = field(default_factory=list)


# Set after @dataclass, which looks the module up while it runs.
InputStatus.__module__ = "modal.call_graph"
InputInfo.__module__ = "modal.call_graph"

__all__ = ["InputInfo", "InputStatus"]
