"""`modal.call_graph`: the shape of `FunctionCall.get_call_graph()` results."""

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


__all__ = ["InputInfo", "InputStatus"]
