"""`modal.io_streams`: sandbox process streams (implementation in `modal_ray.io_streams`)."""

from modal_ray.io_streams import StreamReader, StreamWriter

__all__ = ["StreamReader", "StreamWriter"]
