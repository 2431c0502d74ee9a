"""`modal.stream_type`: where a sandbox process's output goes."""

import enum
import subprocess


class StreamType(enum.Enum):
    """Output stream handling for sandbox processes."""

    PIPE = subprocess.PIPE
    DEVNULL = subprocess.DEVNULL
    STDOUT = 1

    def __repr__(self) -> str:
        return f"{self.__module__}.{self.__class__.__name__}.{self.name}"


__all__ = ["StreamType"]
