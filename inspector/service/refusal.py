"""Why the service answers a frame without a result: domain refusals, free of any transport.

The pipeline and the capacity checks raise :class:`Rejected` with a :class:`Kind`; ``convert.status`` is the one place
that maps a kind to a gRPC status code. A refusal is an :class:`~inspector.errors.InspectorError` but no
``UserError``: it is the caller's answer, not a mistake of the person running inspector.
"""

from __future__ import annotations

import enum

from inspector.errors import InspectorError


class Kind(enum.Enum):
    """What the caller should do about a refusal."""

    INVALID = "invalid"  # the frame itself is wrong: fix it, resending will not help
    OVERLOADED = "overloaded"  # no room now: retry later or on another replica
    UNAVAILABLE = "unavailable"  # not ready yet, or shutting down: retry, elsewhere if shutting down
    NOT_FOUND = "not_found"  # the caller asked for a model or version this service does not serve
    DEADLINE = "deadline"  # the caller's deadline passed before the frame was inspected
    INTERNAL = "internal"  # the service failed on this frame: resend it, and report it if it repeats


class Rejected(InspectorError):
    """A frame the service does not answer with a result.

    Args:
        kind: What the caller should do about it.
        reason: A short word for the stream's ``error.reason`` and the metrics (``too_large``, ``overloaded``...).
        message: What is wrong, for a person.
        field: The request field at fault, when one is (``encoding``): reported as a ``BadRequest`` violation.
    """

    def __init__(self, kind: Kind, reason: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.kind, self.reason, self.message, self.field = kind, reason, message, field
