import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Encoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENCODING_UNSPECIFIED: _ClassVar[Encoding]
    JPEG: _ClassVar[Encoding]
    PNG: _ClassVar[Encoding]
    BMP: _ClassVar[Encoding]
    RAW_GRAY8: _ClassVar[Encoding]
    RAW_BGR8: _ClassVar[Encoding]
    RAW_RGB8: _ClassVar[Encoding]

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    ACCEPT: _ClassVar[Verdict]
    REJECT: _ClassVar[Verdict]
    REVIEW: _ClassVar[Verdict]
ENCODING_UNSPECIFIED: Encoding
JPEG: Encoding
PNG: Encoding
BMP: Encoding
RAW_GRAY8: Encoding
RAW_BGR8: Encoding
RAW_RGB8: Encoding
VERDICT_UNSPECIFIED: Verdict
ACCEPT: Verdict
REJECT: Verdict
REVIEW: Verdict

class InspectRequest(_message.Message):
    __slots__ = ("data", "encoding", "width", "height", "stride", "camera_id", "frame_id", "capture_time", "return_mask", "return_anomaly_map")
    DATA_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    STRIDE_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_FIELD_NUMBER: _ClassVar[int]
    RETURN_MASK_FIELD_NUMBER: _ClassVar[int]
    RETURN_ANOMALY_MAP_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    encoding: Encoding
    width: int
    height: int
    stride: int
    camera_id: str
    frame_id: str
    capture_time: _timestamp_pb2.Timestamp
    return_mask: bool
    return_anomaly_map: bool
    def __init__(self, data: _Optional[bytes] = ..., encoding: _Optional[_Union[Encoding, str]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., stride: _Optional[int] = ..., camera_id: _Optional[str] = ..., frame_id: _Optional[str] = ..., capture_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., return_mask: _Optional[bool] = ..., return_anomaly_map: _Optional[bool] = ...) -> None: ...

class Region(_message.Message):
    __slots__ = ("defect_class", "x", "y", "width", "height", "area_px", "area_fraction", "max_score")
    DEFECT_CLASS_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    AREA_PX_FIELD_NUMBER: _ClassVar[int]
    AREA_FRACTION_FIELD_NUMBER: _ClassVar[int]
    MAX_SCORE_FIELD_NUMBER: _ClassVar[int]
    defect_class: str
    x: int
    y: int
    width: int
    height: int
    area_px: int
    area_fraction: float
    max_score: float
    def __init__(self, defect_class: _Optional[str] = ..., x: _Optional[int] = ..., y: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., area_px: _Optional[int] = ..., area_fraction: _Optional[float] = ..., max_score: _Optional[float] = ...) -> None: ...

class Thresholds(_message.Message):
    __slots__ = ("reject", "review", "mask", "min_region_area", "per_class", "anomaly", "anomaly_verdict", "mask_weight")
    class PerClassEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    REJECT_FIELD_NUMBER: _ClassVar[int]
    REVIEW_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    MIN_REGION_AREA_FIELD_NUMBER: _ClassVar[int]
    PER_CLASS_FIELD_NUMBER: _ClassVar[int]
    ANOMALY_FIELD_NUMBER: _ClassVar[int]
    ANOMALY_VERDICT_FIELD_NUMBER: _ClassVar[int]
    MASK_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    reject: float
    review: float
    mask: float
    min_region_area: int
    per_class: _containers.ScalarMap[str, float]
    anomaly: float
    anomaly_verdict: Verdict
    mask_weight: float
    def __init__(self, reject: _Optional[float] = ..., review: _Optional[float] = ..., mask: _Optional[float] = ..., min_region_area: _Optional[int] = ..., per_class: _Optional[_Mapping[str, float]] = ..., anomaly: _Optional[float] = ..., anomaly_verdict: _Optional[_Union[Verdict, str]] = ..., mask_weight: _Optional[float] = ...) -> None: ...

class StageTimings(_message.Message):
    __slots__ = ("decode_ms", "preprocess_ms", "queue_ms", "infer_ms", "postprocess_ms", "total_ms")
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    PREPROCESS_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    INFER_MS_FIELD_NUMBER: _ClassVar[int]
    POSTPROCESS_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    decode_ms: float
    preprocess_ms: float
    queue_ms: float
    infer_ms: float
    postprocess_ms: float
    total_ms: float
    def __init__(self, decode_ms: _Optional[float] = ..., preprocess_ms: _Optional[float] = ..., queue_ms: _Optional[float] = ..., infer_ms: _Optional[float] = ..., postprocess_ms: _Optional[float] = ..., total_ms: _Optional[float] = ...) -> None: ...

class FrameError(_message.Message):
    __slots__ = ("code", "reason", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    reason: str
    message: str
    def __init__(self, code: _Optional[int] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class InspectResponse(_message.Message):
    __slots__ = ("frame_id", "camera_id", "verdict", "label", "defect_class", "defect_score", "class_scores", "mask_png", "regions", "thresholds", "model_version", "timings", "error", "anomaly_score", "anomaly_map_png", "by_anomaly")
    class ClassScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    DEFECT_CLASS_FIELD_NUMBER: _ClassVar[int]
    DEFECT_SCORE_FIELD_NUMBER: _ClassVar[int]
    CLASS_SCORES_FIELD_NUMBER: _ClassVar[int]
    MASK_PNG_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ANOMALY_SCORE_FIELD_NUMBER: _ClassVar[int]
    ANOMALY_MAP_PNG_FIELD_NUMBER: _ClassVar[int]
    BY_ANOMALY_FIELD_NUMBER: _ClassVar[int]
    frame_id: str
    camera_id: str
    verdict: Verdict
    label: str
    defect_class: str
    defect_score: float
    class_scores: _containers.ScalarMap[str, float]
    mask_png: bytes
    regions: _containers.RepeatedCompositeFieldContainer[Region]
    thresholds: Thresholds
    model_version: str
    timings: StageTimings
    error: FrameError
    anomaly_score: float
    anomaly_map_png: bytes
    by_anomaly: bool
    def __init__(self, frame_id: _Optional[str] = ..., camera_id: _Optional[str] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., label: _Optional[str] = ..., defect_class: _Optional[str] = ..., defect_score: _Optional[float] = ..., class_scores: _Optional[_Mapping[str, float]] = ..., mask_png: _Optional[bytes] = ..., regions: _Optional[_Iterable[_Union[Region, _Mapping]]] = ..., thresholds: _Optional[_Union[Thresholds, _Mapping]] = ..., model_version: _Optional[str] = ..., timings: _Optional[_Union[StageTimings, _Mapping]] = ..., error: _Optional[_Union[FrameError, _Mapping]] = ..., anomaly_score: _Optional[float] = ..., anomaly_map_png: _Optional[bytes] = ..., by_anomaly: _Optional[bool] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "version", "backbone", "classes", "input_height", "input_width", "thresholds", "created_at", "validation", "training")
    class ValidationEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class TrainingEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BACKBONE_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    INPUT_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    INPUT_WIDTH_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FIELD_NUMBER: _ClassVar[int]
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    backbone: str
    classes: _containers.RepeatedScalarFieldContainer[str]
    input_height: int
    input_width: int
    thresholds: Thresholds
    created_at: str
    validation: _containers.ScalarMap[str, float]
    training: _containers.ScalarMap[str, float]
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., backbone: _Optional[str] = ..., classes: _Optional[_Iterable[str]] = ..., input_height: _Optional[int] = ..., input_width: _Optional[int] = ..., thresholds: _Optional[_Union[Thresholds, _Mapping]] = ..., created_at: _Optional[str] = ..., validation: _Optional[_Mapping[str, float]] = ..., training: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("name", "version", "active", "created_at", "validation", "training")
    class ValidationEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class TrainingEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FIELD_NUMBER: _ClassVar[int]
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    active: bool
    created_at: str
    validation: _containers.ScalarMap[str, float]
    training: _containers.ScalarMap[str, float]
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., active: _Optional[bool] = ..., created_at: _Optional[str] = ..., validation: _Optional[_Mapping[str, float]] = ..., training: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("versions", "serving")
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    serving: str
    def __init__(self, versions: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ..., serving: _Optional[str] = ...) -> None: ...

class ActivateVersionRequest(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: str
    def __init__(self, version: _Optional[str] = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetThresholdsRequest(_message.Message):
    __slots__ = ("thresholds",)
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    thresholds: Thresholds
    def __init__(self, thresholds: _Optional[_Union[Thresholds, _Mapping]] = ...) -> None: ...
