"""A reviewer's answer as a page posts it, checked against the frame's record and turned into a :class:`Review`.

The page sends ``{image, label, mask, mask_png?, reviewer?}``: ``mask`` is ``model`` (the canvas still holds the
model's mask), ``none`` (erased) or ``painted`` with ``mask_png``, the canvas as a base64 PNG of the frame's size.
A browser's canvas only exports RGBA, so a colour or grey-and-alpha PNG is accepted and reduced to one channel: a
pixel is defect where it is bright (> 127) and not transparent. The mask is stored re-encoded as 0/255, one channel.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path

import cv2
import numpy as np

from inspector.artifacts.audit_folder import MODEL_MASK, NO_MASK, Review, inside
from inspector.errors import UsageError
from inspector.review.queue import labels

PAINTED = "painted"
MASKS = (MODEL_MASK, NO_MASK, PAINTED)
MAX_REVIEWER = 80  # characters of a reviewer's name kept


class AnswerError(UsageError):
    """An answer the server refuses (answered 400 with this message)."""


def reviewer_name(value: object) -> str:
    """``value`` as a reviewer's name: a string without control characters, at most ``MAX_REVIEWER`` long."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise AnswerError("reviewer must be a string")
    return re.sub(r"[\x00-\x1f\x7f]", "", value).strip()[:MAX_REVIEWER]


def painted_mask(png: bytes, size: tuple[int, int]) -> np.ndarray:
    """The 0/255 single-channel mask ``png`` holds, checked to be ``size`` (width, height) pixels.

    Raises:
        AnswerError: ``png`` is not a decodable image, or not of the frame's size.
    """
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED) if png else None
    if image is None or image.ndim not in (2, 3) or image.size == 0:
        raise AnswerError("mask_png is not a decodable PNG image")
    if image.dtype == np.uint16:  # a 16-bit PNG: its high byte
        image = (image >> 8).astype(np.uint8)
    height, width = image.shape[:2]
    if (width, height) != tuple(size):
        raise AnswerError(f"the painted mask is {width}x{height} px, the frame {size[0]}x{size[1]} px: paint on the "
                          f"frame's own size")
    if image.ndim == 3:
        channels = image.shape[2]
        if channels not in (1, 2, 3, 4):
            raise AnswerError(f"the painted mask has {channels} channels; send one (grey), or RGB/RGBA")
        colour = image[..., : 1 if channels <= 2 else 3].max(axis=2)
        alpha = image[..., -1] if channels in (2, 4) else np.full_like(colour, 255)
        image = np.where(alpha > 127, colour, 0).astype(np.uint8)
    return np.where(image > 127, 255, 0).astype(np.uint8)  # (h, w)


def frame_size(root: Path, image: str) -> tuple[int, int]:
    """The (width, height) of the frame ``image`` of the audit folder ``root``.

    Raises:
        AnswerError: The frame's file is missing or cannot be decoded.
    """
    path = inside(root, image)
    frame = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path else None
    if frame is None:
        raise AnswerError(f"the frame {image} cannot be read from the audit folder: a painted mask needs its size")
    return frame.shape[1], frame.shape[0]


def parse_answer(payload: object, record: dict, root: Path) -> tuple[Review, bytes | None]:
    """The review ``payload`` (a posted JSON object) stands for, and the painted mask's PNG to store (or None).

    A painted mask without any defect pixel is stored as ``none``: there is no file to keep.

    Raises:
        AnswerError: A field is missing or wrong: the label is not ``good`` or a class of the record, the mask kind
            is unknown, the painted PNG is not decodable or not of the frame's size.
    """
    if not isinstance(payload, dict):
        raise AnswerError("the answer must be a JSON object {image, label, mask, mask_png?, reviewer?}")
    label, mask = payload.get("label"), payload.get("mask", MODEL_MASK)
    allowed = labels(record)
    if not isinstance(label, str) or label not in allowed:
        raise AnswerError(f"label must be one of {', '.join(allowed)}; got {label!r}")
    if mask not in MASKS:
        raise AnswerError(f"mask must be one of {', '.join(MASKS)}; got {mask!r}")
    review = Review(record["image"], label, mask=mask, reviewer=reviewer_name(payload.get("reviewer")))
    if mask != PAINTED:
        return review, None
    text = payload.get("mask_png")
    if not isinstance(text, str) or not text:
        raise AnswerError("mask painted needs mask_png: the mask as a base64 PNG")
    try:
        png = base64.b64decode(text.split(",", 1)[1] if text.startswith("data:") else text, validate=True)
    except (binascii.Error, ValueError):
        raise AnswerError("mask_png is not valid base64") from None
    pixels = painted_mask(png, frame_size(root, record["image"]))
    if not pixels.any():
        review.mask = NO_MASK
        return review, None
    return review, cv2.imencode(".png", pixels)[1].tobytes()
