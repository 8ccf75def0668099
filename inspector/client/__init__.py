"""A client of the service: frames from files, folders or videos, streamed over gRPC (``InspectorClient``)."""

from inspector.client.connection import (FrameSource, InspectorClient, channel, decode_mask, frames_from_paths,
                                         request_for)

__all__ = ["FrameSource", "InspectorClient", "channel", "decode_mask", "frames_from_paths", "request_for"]
