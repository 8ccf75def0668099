"""The error model of every refusal: a ``google.rpc.Status`` in the ``grpc-status-details-bin`` trailer.

Each refusal carries an ``ErrorInfo`` whose ``reason`` is the same short word as a stream's ``FrameError.reason``
(``too_large``, ``undecodable``, ``overloaded``...), in the domain ``inspector``, with the frame id and the like as
metadata; bad input to an admin call adds a ``BadRequest`` naming the field. Clients of any language read it with
their gRPC status library (Python: ``grpc_status.rpc_status.from_call``); :func:`details_of` reads it here.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "inspector"


def rich_status(code: grpc.StatusCode, message: str, reason: str, metadata: Mapping[str, str] | None = None,
                fields: Mapping[str, str] | None = None) -> grpc.Status:
    """A status whose trailer carries an ``ErrorInfo`` (and a ``BadRequest`` when ``fields`` names bad fields).

    Args:
        code: The call's status code.
        message: What is wrong, for a person (the call's details).
        reason: The short word a program switches on (``ErrorInfo.reason``).
        metadata: Context for the reason (``frame_id``, ``limit``...), as strings.
        fields: Field path -> what is wrong with it, for ``BadRequest.field_violations``.
    """
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=dict(metadata or {})))
    details = [info]
    if fields:
        bad = any_pb2.Any()
        bad.Pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in fields.items()]))
        details.append(bad)
    return rpc_status.to_status(status_pb2.Status(code=code.value[0], message=message, details=details))


class Details(NamedTuple):
    """What a failed call's trailer says; empty fields when it carries no details."""

    reason: str = ""
    domain: str = ""
    metadata: Mapping[str, str] = {}
    fields: Mapping[str, str] = {}  # field path -> description, from BadRequest


def details_of(err: grpc.RpcError) -> Details:
    """The ``ErrorInfo`` and ``BadRequest`` of a failed call (a ``grpc.Call`` or an aio error), if any."""
    try:
        status = rpc_status.from_call(err)  # type: ignore[arg-type]
    except (AttributeError, TypeError, ValueError):  # no trailer, or one that disagrees with the call's status
        return Details()
    if status is None:
        return Details()
    reason = domain = ""
    metadata: dict[str, str] = {}
    fields: dict[str, str] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields.update((v.field, v.description) for v in bad.field_violations)
    return Details(reason, domain, metadata, fields)
