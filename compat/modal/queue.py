"""`modal.queue`: distributed FIFO queues (implementation in `modal_ray.queue`)."""

from modal_ray.queue import Queue, QueueInfo

__all__ = ["Queue", "QueueInfo"]
