"""The error of a payload that cannot be a frame."""

from inspector.errors import UserError


class FrameError(UserError, ValueError):
    """A payload that cannot be a frame. ``reason`` is a short fixed code (for metrics)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
