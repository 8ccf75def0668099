"""A client of the service: frames from files, folders or videos, streamed over gRPC (``InspectorClient``).

The names of :mod:`inspector.client.connection` load on first use, so :mod:`inspector.client.errors` (gRPC only)
can be imported without OpenCV and numpy (the health probe describes failures with it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from inspector.client.errors import CallFailed, StreamBroken, Unreachable, describe_rpc_error

if TYPE_CHECKING:
    from inspector.client.connection import (FrameSource, InspectorClient, channel, decode_mask, frames_from_paths,
                                             request_for)

_LAZY = {"FrameSource", "InspectorClient", "channel", "decode_mask", "frames_from_paths", "request_for"}

__all__ = ["CallFailed", "FrameSource", "InspectorClient", "StreamBroken", "Unreachable", "channel", "decode_mask",
           "describe_rpc_error", "frames_from_paths", "request_for"]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module("inspector.client.connection"), name)
    raise AttributeError(f"module 'inspector.client' has no attribute {name!r}")
