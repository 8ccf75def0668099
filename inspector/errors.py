"""Errors that are the user's to fix (bad path, bad frame, bad bundle): the CLI prints them without a traceback."""

import grpc

from inspector.bundle import BundleError
from inspector.model import WeightsNotFoundError
from inspector.preprocess import FrameError

USER_ERRORS: tuple[type[Exception], ...] = (
    BundleError, FrameError, WeightsNotFoundError, FileNotFoundError, ValueError, grpc.RpcError,
)
