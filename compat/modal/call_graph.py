"""`modal.call_graph`: the shape of `FunctionCall.get_call_graph()` results (defined in
`modal_ray.call_graph`)."""

from modal_ray.call_graph import InputInfo, InputStatus

__all__ = ["InputInfo", "InputStatus"]
