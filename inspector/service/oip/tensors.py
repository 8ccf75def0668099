"""Tensors of the Open Inference Protocol <-> numpy arrays and lists of byte strings.

A tensor's values travel either in ``contents`` (the repeated field of its datatype) or, in the order of the
tensors, in ``raw_input_contents``/``raw_output_contents`` as row-major bytes; a BYTES tensor's raw form is each
element's 4-byte little-endian length followed by its bytes. Bad tensors are refused ``bad_tensor``.
"""

from __future__ import annotations

import math
import struct
from typing import Sequence, Union

import numpy as np

from inspector.oip import inference_pb2 as oip
from inspector.service.refusal import Kind, Rejected

Value = Union[np.ndarray, list[bytes]]
DTYPES = {"BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "INT32": np.dtype("<i4"),
          "INT64": np.dtype("<i8"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
CONTENTS = {"BOOL": "bool_contents", "UINT8": "uint_contents", "INT32": "int_contents", "INT64": "int64_contents",
            "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}
DATATYPE_OF = {dtype: name for name, dtype in DTYPES.items()}
LENGTH = struct.Struct("<I")


def bad_tensor(message: str) -> Rejected:
    return Rejected(Kind.INVALID, "bad_tensor", message)


def elements(shape: Sequence[int]) -> int:
    """Elements of a tensor of ``shape``; refuses negative sizes."""
    if any(d < 0 for d in shape):
        raise bad_tensor(f"shape {list(shape)}: sizes must be >= 0")
    return math.prod(shape)


def unpack_bytes(raw: bytes, count: int, name: str) -> list[bytes]:
    """A BYTES tensor's raw form -> its ``count`` elements."""
    out, at = [], 0
    for _ in range(count):
        if at + LENGTH.size > len(raw):
            raise bad_tensor(f"{name}: raw BYTES contents end inside element {len(out)} of {count}")
        (size,) = LENGTH.unpack_from(raw, at)
        at += LENGTH.size
        if at + size > len(raw):
            raise bad_tensor(f"{name}: element {len(out)} claims {size} bytes, {len(raw) - at} remain")
        out.append(raw[at:at + size])
        at += size
    if at != len(raw):
        raise bad_tensor(f"{name}: {len(raw) - at} bytes after the {count} elements of its shape")
    return out


def pack_bytes(values: Sequence[bytes]) -> bytes:
    return b"".join(LENGTH.pack(len(v)) + v for v in values)


def read_input(tensor: oip.ModelInferRequest.InferInputTensor, raw: bytes | None) -> Value:
    """An input tensor's values: an array of its shape, or the list of a BYTES tensor's elements.

    Raises:
        Rejected: ``bad_tensor`` for an unknown datatype or contents that do not match the shape;
            ``size_mismatch`` for raw pixels of the wrong length (the word ``inspector.v1`` uses for raw frames).
    """
    name, count = tensor.name, elements(tensor.shape)
    if tensor.datatype == "BYTES":
        values = unpack_bytes(raw, count, name) if raw is not None else list(tensor.contents.bytes_contents)
        if len(values) != count:
            raise bad_tensor(f"{name}: shape {list(tensor.shape)} holds {count} elements, the contents {len(values)}")
        return values
    dtype = DTYPES.get(tensor.datatype)
    if dtype is None:
        raise bad_tensor(f"{name}: datatype {tensor.datatype!r} is not one of {', '.join([*DTYPES, 'BYTES'])}")
    if raw is not None:
        if len(raw) != count * dtype.itemsize:
            raise Rejected(Kind.INVALID, "size_mismatch", f"{name}: shape {list(tensor.shape)} of "
                           f"{tensor.datatype} needs {count * dtype.itemsize} bytes, got {len(raw)}")
        return np.frombuffer(raw, dtype).reshape(tuple(tensor.shape))
    values = getattr(tensor.contents, CONTENTS[tensor.datatype])
    if len(values) != count:
        raise Rejected(Kind.INVALID, "size_mismatch", f"{name}: shape {list(tensor.shape)} holds {count} "
                       f"elements, the contents {len(values)}")
    array = np.asarray(values)
    if dtype == np.uint8 and array.size and (array.min() < 0 or array.max() > 255):
        raise bad_tensor(f"{name}: UINT8 values must be 0..255")
    return array.astype(dtype).reshape(tuple(tensor.shape))


def write_output(name: str, value: Value) -> tuple[oip.ModelInferResponse.InferOutputTensor, bytes]:
    """An output tensor and its raw contents."""
    if isinstance(value, list):
        return oip.ModelInferResponse.InferOutputTensor(name=name, datatype="BYTES", shape=[len(value)]), \
            pack_bytes(value)
    array = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<") if value.dtype.itemsize > 1 else None)
    datatype = DATATYPE_OF[array.dtype]
    return oip.ModelInferResponse.InferOutputTensor(name=name, datatype=datatype, shape=list(array.shape)), \
        array.tobytes()
