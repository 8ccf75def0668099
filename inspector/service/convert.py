"""protobuf <-> plain Python for the servicer."""

from __future__ import annotations

import dataclasses
import datetime

import grpc
from typing import Sequence

from inspector.config import Thresholds
from inspector.errors import FieldError
from inspector.inference.predictor import Prediction, Predictor
from inspector.service.audit import AuditRecord
from inspector.service.pipeline import FrameIn, Inspection
from inspector.service.refusal import Kind, Rejected
from inspector.v1 import inspector_pb2 as pb

STATUS = {Kind.INVALID: grpc.StatusCode.INVALID_ARGUMENT, Kind.OVERLOADED: grpc.StatusCode.RESOURCE_EXHAUSTED,
          Kind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE, Kind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
          Kind.DEADLINE: grpc.StatusCode.DEADLINE_EXCEEDED,
          Kind.INTERNAL: grpc.StatusCode.INTERNAL}  # the one mapping of refusals to gRPC
VERDICTS = {"ACCEPT": pb.ACCEPT, "REJECT": pb.REJECT, "REVIEW": pb.REVIEW}
ANOMALY_VERDICTS = {pb.REVIEW: "REVIEW", pb.REJECT: "REJECT"}  # what the anomaly head may give


def frame_in(request: pb.InspectRequest) -> FrameIn:
    """The payload and its description.

    Raises:
        Rejected: INVALID, reason ``unknown_encoding`` (the decoder's word for a name it does not know), when
            ``encoding`` is not set or is a number that is no ``Encoding`` value (proto3 enums are open: a newer
            client's value arrives as its bare number).
    """
    if request.encoding == pb.ENCODING_UNSPECIFIED or request.encoding not in pb.Encoding.values():
        expected = ", ".join(v.name for v in pb.Encoding.DESCRIPTOR.values if v.number != pb.ENCODING_UNSPECIFIED)
        problem = ("encoding is not set: unknown encoding 'ENCODING_UNSPECIFIED'"
                   if request.encoding == pb.ENCODING_UNSPECIFIED else
                   f"encoding: unknown encoding {request.encoding}, no inspector.v1.Encoding value")
        raise Rejected(Kind.INVALID, "unknown_encoding", f"{problem}; expected one of {expected}", field="encoding")
    return FrameIn(request.data, pb.Encoding.Name(request.encoding), request.width, request.height, request.stride,
                   request.return_mask, request.return_anomaly_map)


def thresholds_pb(t: Thresholds) -> pb.Thresholds:
    return pb.Thresholds(reject=t.reject, review=t.review, mask=t.mask, min_region_area=t.min_region_area,
                         per_class=t.per_class, anomaly=t.anomaly, anomaly_verdict=VERDICTS[t.anomaly_verdict],
                         mask_weight=t.mask_weight)


def thresholds_from_pb(t: pb.Thresholds, current: Thresholds, classes: Sequence[str] | None = None) -> Thresholds:
    """``current`` with the fields set in ``t`` changed, validated.

    Args:
        t: The fields to change; unset ones keep their values.
        current: The thresholds served now.
        classes: The serving model's classes (``Predictor.classes``); when given, ``per_class`` may name only its
            defect classes.

    Raises:
        FieldError: (a ValueError) A refused value; the message names the field and the value, ``field`` names the
            request's field (``reject``, ``per_class[scratch]``, ``anomaly_verdict``...).
    """
    fields = ("reject", "review", "mask", "mask_weight", "min_region_area", "anomaly")
    changes = {f: getattr(t, f) for f in fields if t.HasField(f)}
    if t.per_class:
        changes["per_class"] = dict(t.per_class)
    if t.HasField("anomaly_verdict"):
        if t.anomaly_verdict not in ANOMALY_VERDICTS:
            name = (pb.Verdict.Name(t.anomaly_verdict) if t.anomaly_verdict in pb.Verdict.values() else
                    f"{t.anomaly_verdict} (no inspector.v1.Verdict value)")
            raise FieldError("anomaly_verdict", f"anomaly_verdict must be REVIEW or REJECT, got {name}")
        changes["anomaly_verdict"] = ANOMALY_VERDICTS[t.anomaly_verdict]
    try:
        thresholds = dataclasses.replace(current, **changes)
    except FieldError as err:  # review above reject: blame the one of them the request set
        if err.field == "review" and "review" not in changes:
            raise FieldError("reject", str(err)) from None
        raise
    if classes is not None:
        thresholds.check_classes(classes)
    return thresholds


def response(request: pb.InspectRequest, result: Inspection) -> pb.InspectResponse:
    p = result.prediction
    ms = {f"{k}_ms": v * 1000.0 for k, v in result.timings.items()}
    return pb.InspectResponse(
        frame_id=request.frame_id,
        camera_id=request.camera_id,
        verdict=VERDICTS[p.verdict],
        label=p.label,
        defect_class=p.defect_class,
        defect_score=p.defect_score,
        class_scores=p.class_scores,
        mask_png=result.mask_png,
        anomaly_score=p.anomaly_score,
        anomaly_map_png=result.anomaly_map_png,
        by_anomaly=p.by_anomaly,
        regions=[pb.Region(**dataclasses.asdict(r)) for r in p.regions],
        thresholds=thresholds_pb(result.thresholds),
        model_version=p.model_version,
        timings=pb.StageTimings(**ms),
    )


def audit_record(camera_id: str, frame_id: str, p: Prediction, capture_time: str = "") -> AuditRecord:
    return AuditRecord(camera_id, frame_id, p.verdict, p.label, p.defect_class, p.defect_score, p.class_scores,
                       [dataclasses.asdict(r) for r in p.regions], p.model_version, p.anomaly_score, p.by_anomaly,
                       capture_time)


def capture_time(request: pb.InspectRequest) -> str:
    """The request's capture time as ISO 8601 (UTC), or "" when it has none."""
    if not request.HasField("capture_time"):
        return ""
    return request.capture_time.ToDatetime(tzinfo=datetime.timezone.utc).isoformat(timespec="milliseconds")


def status(err: Rejected) -> grpc.StatusCode:
    """The gRPC status code of a refusal."""
    return STATUS[err.kind]


def error_response(request: pb.InspectRequest, err: Rejected) -> pb.InspectResponse:
    return pb.InspectResponse(
        frame_id=request.frame_id,
        camera_id=request.camera_id,
        error=pb.FrameError(code=status(err).value[0], reason=err.reason, message=err.message),
    )


def model_info(predictor: Predictor, thresholds: Thresholds) -> pb.ModelInfo:
    meta = predictor.bundle.meta
    return pb.ModelInfo(
        name=meta.name,
        version=meta.version,
        backbone=meta.backbone,
        classes=list(predictor.classes),
        input_height=predictor.spec.height,
        input_width=predictor.spec.width,
        thresholds=thresholds_pb(thresholds),
        created_at=meta.created_at,
        validation=meta.validation_figures,
        training=meta.training_figures,
    )
