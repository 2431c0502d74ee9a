"""`modal.server`: Modal Servers (`@app.server(port=...)`)."""

from modal_ray.server import Server, ServerAutoscalerSettings

__all__ = ["Server", "ServerAutoscalerSettings"]
