"""`modal.Retries`: a function's retry policy with exponential or fixed backoff."""

from modal_ray.specs import RetryPolicy


class Retries:
    """Adds a retry policy to a Modal function (`retries=modal.Retries(...)`)."""

    def __init__(
        self,
        *,
        max_retries: int,
        backoff_coefficient: float = 2.0,
        initial_delay: float = 1.0,
        max_delay: float = 60.0,
    ) -> None:
        self._policy = RetryPolicy(
            max_retries=max_retries,
            backoff_coefficient=float(backoff_coefficient),
            initial_delay=float(initial_delay),
            max_delay=float(max_delay),
        )
        self.max_retries = max_retries
        self.backoff_coefficient = backoff_coefficient
        self.initial_delay = initial_delay
        self.max_delay = max_delay

    def __repr__(self) -> str:
        return (
            f"Retries(max_retries={self.max_retries},"
            f" backoff_coefficient={self.backoff_coefficient},"
            f" initial_delay={self.initial_delay}, max_delay={self.max_delay})"
        )


__all__ = ["Retries"]
