"""inspector's exceptions: one base, and a branch for what the user must fix.

``UserError`` is a mistake the person running inspector can correct (a path, a flag value, a data set, a bundle, a
frame, a service that cannot be reached): the CLI prints its message in one line and exits 2, and the message says
what is wrong and, where it can, what to do. Anything else that escapes a command is a bug and shows its traceback.
The classes that replace a built-in exception keep it as a second base (``UsageError`` is a ``ValueError``,
``MissingPathError`` a ``FileNotFoundError``), so callers that catch the built-in go on working.

This module imports nothing, so every layer can raise these (the domain errors of the other modules derive from
them: ``BundleError``, ``StoreError``, ``FrameError``, ``WeightsNotFoundError``).
"""

from __future__ import annotations


class InspectorError(Exception):
    """Base of the errors inspector raises on purpose."""


class UserError(InspectorError):
    """Something the user must fix; the CLI prints the message alone (no traceback) and exits 2."""


class UsageError(UserError, ValueError):
    """A value given on the command line (or in a config) that the command cannot use: a flag, a device, a name."""


class FieldError(UsageError):
    """A value of one named field that is refused (a threshold, a request field).

    Args:
        field: The field's name as a caller sets it: ``reject``, ``per_class[scratch]``, ``anomaly_verdict``; an API
            reports it as the field of a bad request (``google.rpc.BadRequest``).
        message: What is wrong, naming the field and the value.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field

    def __reduce__(self):  # pickles with both arguments (a DataLoader worker's error reaches the main process)
        return type(self), (self.field, str(self))


class DataError(UserError, ValueError):
    """A data set that is not what the command needs: its layout, its classes, an unreadable mask."""


class MissingPathError(UserError, FileNotFoundError):
    """A path the user gave that does not exist or is not what it should be (a folder, a bundle, an image)."""


class ServiceError(UserError):
    """The service could not be reached or refused a call (``inspector client``); the message has the status."""
