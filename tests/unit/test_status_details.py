"""The error model's trailer: what the service packs is what any gRPC status library unpacks."""

import grpc
from google.rpc import error_details_pb2, status_pb2

from inspector.status_details import DOMAIN, Details, details_of, rich_status


class Failed(grpc.RpcError, grpc.Call):
    """A failed call as a client sees it: a code, details and the trailing metadata of a status."""

    def __init__(self, status: grpc.Status) -> None:
        self.status = status

    def code(self):
        return self.status.code

    def details(self):
        return self.status.details

    def trailing_metadata(self):
        return self.status.trailing_metadata

    def initial_metadata(self):
        return ()

    def is_active(self):
        return False

    def time_remaining(self):
        return None

    def cancel(self):
        return False

    def add_callback(self, callback):
        return False


def test_reason_metadata_and_fields_round_trip():
    status = rich_status(grpc.StatusCode.INVALID_ARGUMENT, "frame 'a': too big", "too_large", {"frame_id": "a"},
                         {"thresholds.review": "must be in [0, 1]"})
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT and status.details == "frame 'a': too big"
    assert details_of(Failed(status)) == Details("too_large", DOMAIN, {"frame_id": "a"},
                                                 {"thresholds.review": "must be in [0, 1]"})


def test_the_trailer_is_the_standard_one():
    status = rich_status(grpc.StatusCode.UNAVAILABLE, "draining", "shutting_down")
    (key, value), = status.trailing_metadata
    assert key == "grpc-status-details-bin"
    decoded = status_pb2.Status.FromString(value)
    assert decoded.code == grpc.StatusCode.UNAVAILABLE.value[0] and decoded.message == "draining"
    info = error_details_pb2.ErrorInfo()
    assert decoded.details[0].Unpack(info) and (info.reason, info.domain) == ("shutting_down", "inspector")
    assert len(decoded.details) == 1  # no BadRequest without fields


def test_a_call_without_details_reads_as_empty():
    status = type("Plain", (grpc.Status,), {"code": grpc.StatusCode.INTERNAL, "details": "boom",
                                            "trailing_metadata": ()})()
    assert details_of(Failed(status)) == Details()
