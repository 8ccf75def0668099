"""How inspector's model looks through the Open Inference Protocol: one frame in, the inspection out as tensors.

Inputs (exactly one per request):
  ``image``   BYTES [1]            an encoded frame (JPEG, PNG or BMP, told by its first bytes)
  ``pixels``  UINT8 [H, W, C]      raw pixels, C = 3 (RGB, or BGR with the parameter ``channel_order``, of the input
                                   or of the request) or 1; [H, W] for grayscale
Request parameters: ``camera_id``, ``frame_id`` (strings; ``frame_id`` defaults to the request id), ``channel_order``.
Outputs: see :data:`OUTPUTS`; ``mask`` and ``anomaly_map`` only when requested, the rest when no output is named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from inspector.imaging.headers import MAGIC
from inspector.inference.predictor import Prediction, Predictor
from inspector.oip import inference_pb2 as oip
from inspector.service.oip.tensors import Value, bad_tensor, read_input, write_output
from inspector.inference.postprocess import anomaly_pixels, mask_pixels
from inspector.service.pipeline import FrameIn, Inspection
from inspector.service.refusal import Kind, Rejected

PLATFORM = "inspector"
RAW_ENCODING = {("RGB", 3): "RAW_RGB8", ("BGR", 3): "RAW_BGR8", ("RGB", 1): "RAW_GRAY8", ("BGR", 1): "RAW_GRAY8"}
ON_REQUEST = ("mask", "anomaly_map")  # large: sent only when named in ``outputs``
ANOMALY_ONLY = ("anomaly_score", "anomaly_map")  # models with an anomaly head


class Output(NamedTuple):
    datatype: str
    shape: tuple[int, ...]  # -1: any size; "K" sized outputs use the number of classes
    value: Callable[[Inspection], Value]


def _one(text: str) -> list[bytes]:
    return [text.encode()]


def _boxes(p: Prediction) -> np.ndarray:
    return np.array([[r.x, r.y, r.width, r.height] for r in p.regions], np.int32).reshape(-1, 4)


OUTPUTS: dict[str, Output] = {
    "verdict": Output("BYTES", (1,), lambda r: _one(r.prediction.verdict)),  # ACCEPT, REVIEW or REJECT
    "label": Output("BYTES", (1,), lambda r: _one(r.prediction.label)),
    "defect_class": Output("BYTES", (1,), lambda r: _one(r.prediction.defect_class)),
    "defect_score": Output("FP32", (1,), lambda r: np.array([r.prediction.defect_score], np.float32)),
    "class_names": Output("BYTES", (-1,), lambda r: [c.encode() for c in r.prediction.class_scores]),
    "class_scores": Output("FP32", (-1,), lambda r: np.array(list(r.prediction.class_scores.values()), np.float32)),
    "by_anomaly": Output("BOOL", (1,), lambda r: np.array([r.prediction.by_anomaly])),
    "anomaly_score": Output("FP32", (1,), lambda r: np.array([r.prediction.anomaly_score], np.float32)),
    "region_boxes": Output("INT32", (-1, 4), lambda r: _boxes(r.prediction)),  # x, y, width, height in frame px
    "region_classes": Output("BYTES", (-1,), lambda r: [x.defect_class.encode() for x in r.prediction.regions]),
    "region_scores": Output("FP32", (-1,), lambda r: np.array([x.max_score for x in r.prediction.regions],
                                                              np.float32)),
    "region_areas": Output("INT64", (-1,), lambda r: np.array([x.area_px for x in r.prediction.regions], np.int64)),
    "mask": Output("UINT8", (-1, -1), lambda r: mask_pixels(r.prediction.mask, r.thresholds.mask)),
    "anomaly_map": Output("UINT8", (-1, -1), lambda r: anomaly_pixels(r.prediction.anomaly_map)),
}
INPUTS = {"image": ("BYTES", (1,)), "pixels": ("UINT8", (-1, -1, -1))}


def outputs_of(predictor: Predictor) -> list[str]:
    """The outputs this model has, in :data:`OUTPUTS` order."""
    anomaly = predictor.bundle.meta.anomaly is not None
    return [name for name in OUTPUTS if anomaly or name not in ANOMALY_ONLY]


def metadata(predictor: Predictor) -> oip.ModelMetadataResponse:
    tensor = oip.ModelMetadataResponse.TensorMetadata
    return oip.ModelMetadataResponse(
        name=predictor.bundle.name, versions=[predictor.bundle.version], platform=PLATFORM,
        inputs=[tensor(name=n, datatype=d, shape=s) for n, (d, s) in INPUTS.items()],
        outputs=[tensor(name=n, datatype=OUTPUTS[n].datatype, shape=OUTPUTS[n].shape) for n in outputs_of(predictor)])


@dataclass
class Call:
    """A ModelInferRequest as the service takes it."""

    frame: FrameIn
    camera_id: str
    frame_id: str
    outputs: list[str]


def _parameter(params, name: str) -> str:
    """A string parameter ("" when absent); other kinds are refused."""
    if name not in params:
        return ""
    which = params[name].WhichOneof("parameter_choice")
    if which != "string_param":
        raise bad_tensor(f"parameter {name!r} must be a string, got {which}")
    return params[name].string_param


def _encoded(data: bytes) -> FrameIn:
    encoding = next((name for name, magic in MAGIC.items() if data.startswith(magic)), None)
    if not data:
        raise Rejected(Kind.INVALID, "empty", "image: the frame is empty")
    if encoding is None:
        raise Rejected(Kind.INVALID, "unknown_encoding",
                       f"image: not a JPEG, PNG or BMP (first bytes {data[:8].hex()}); send raw pixels as `pixels`")
    return FrameIn(data, encoding)


def _pixels(array: np.ndarray, order: str) -> FrameIn:
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise bad_tensor(f"pixels: shape {list(array.shape)} is not [H, W], [H, W, 1] or [H, W, 3]")
    order = order.upper() or "RGB"
    if order not in ("RGB", "BGR"):
        raise bad_tensor(f"pixels: channel_order must be RGB or BGR, got {order!r}")
    h, w, c = array.shape
    return FrameIn(array.tobytes(), RAW_ENCODING[order, c], w, h)


def _frame(request: oip.ModelInferRequest) -> FrameIn:
    if len(request.inputs) != 1 or request.inputs[0].name not in INPUTS:
        names = [t.name for t in request.inputs]
        raise Rejected(Kind.INVALID, "bad_input", f"inputs {names}: send exactly one, `image` (BYTES [1], an "
                       "encoded frame) or `pixels` (UINT8 [H, W, C])")
    if request.raw_input_contents and len(request.raw_input_contents) != 1:
        raise bad_tensor(f"{len(request.raw_input_contents)} raw_input_contents for 1 input")
    tensor = request.inputs[0]
    datatype = INPUTS[tensor.name][0]
    if tensor.datatype != datatype:
        raise bad_tensor(f"{tensor.name}: datatype must be {datatype}, got {tensor.datatype!r}")
    value = read_input(tensor, request.raw_input_contents[0] if request.raw_input_contents else None)
    if tensor.name == "pixels":  # the input's parameter, else the request's (clients that cannot set the input's)
        order = _parameter(tensor.parameters, "channel_order") or _parameter(request.parameters, "channel_order")
        return _pixels(value, order)
    if "channel_order" in tensor.parameters:
        raise bad_tensor("image: channel_order applies to `pixels`; an encoded image carries its own")
    if len(value) != 1:
        raise bad_tensor(f"image: one frame per request, got {len(value)}; send frames as concurrent requests or "
                         "on ModelStreamInfer (the service batches them)")
    return _encoded(value[0])


def call(request: oip.ModelInferRequest, available: list[str]) -> Call:
    """The frame, ids and outputs of a request.

    Raises:
        Rejected: INVALID for a bad input, parameter or output name (reasons ``bad_input``, ``bad_tensor``,
            ``unknown_output``, ``size_mismatch``, ``empty``, ``unknown_encoding``).
    """
    frame = _frame(request)
    wanted = [t.name for t in request.outputs] or [n for n in available if n not in ON_REQUEST]
    unknown = [n for n in wanted if n not in available]
    if unknown:
        raise Rejected(Kind.INVALID, "unknown_output", f"outputs {unknown}: this model's are {available}")
    _parameter(request.parameters, "frame_id")  # a string, if given
    return Call(frame, _parameter(request.parameters, "camera_id"), frame_id_of(request), wanted)


def frame_id_of(request: oip.ModelInferRequest) -> str:
    """The ``frame_id`` parameter, else the request id (also for requests refused before they are read)."""
    param = request.parameters.get("frame_id")
    return param.string_param if param is not None and param.string_param else request.id


def _double(value: float) -> oip.InferParameter:
    return oip.InferParameter(double_param=value)


def response(request: oip.ModelInferRequest, c: Call, result: Inspection) -> oip.ModelInferResponse:
    """The inspection as the requested output tensors (raw contents), ids and stage timings (ms) as parameters."""
    name, _, version = result.prediction.model_version.partition("/")
    out = oip.ModelInferResponse(model_name=name, model_version=version, id=request.id)
    for output in c.outputs:
        tensor, raw = write_output(output, OUTPUTS[output].value(result))
        out.outputs.append(tensor)
        out.raw_output_contents.append(raw)
    out.parameters["frame_id"].string_param = c.frame_id
    out.parameters["camera_id"].string_param = c.camera_id
    for stage, seconds in result.timings.items():
        out.parameters[f"{stage}_ms"].CopyFrom(_double(seconds * 1000.0))
    return out
