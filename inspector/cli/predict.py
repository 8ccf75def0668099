"""``inspector predict``: a bundle on image files and folders, as JSON-ready dicts, with optional overlays."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from inspector.cli.args import add_tiling, device, existing, roi, start_torch
from inspector.cli.serve import BACKENDS
from inspector.cli.lines import error_line, frame_line
from inspector.errors import MissingPathError

if TYPE_CHECKING:
    from inspector.inference.options import InferenceOptions
    from inspector.inference.predictor import Prediction


def expand_paths(paths: list[str | Path]) -> list[Path]:
    """Files as given, folders as their images (sorted, recursive)."""
    from inspector.imaging.preprocess import EXTENSIONS

    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in EXTENSIONS)
        elif p.exists():
            out.append(p)
        else:
            raise MissingPathError(f"{p} does not exist")
    return out


def prediction_line(frame_id: str, pred: Prediction, decode_s: float = 0.0) -> dict:
    """The JSON line of a prediction (:mod:`inspector.cli.lines`: the same as ``inspector client`` prints)."""
    seconds = {"decode": decode_s, **pred.timings}  # predict has no queue: frames are passed one by one
    seconds.setdefault("total", sum(seconds.values()))
    return frame_line(frame_id, "", verdict=pred.verdict, label=pred.label, defect_class=pred.defect_class,
                      defect_score=pred.defect_score, class_scores=pred.class_scores, regions=pred.regions,
                      model_version=pred.model_version, timings_ms={k: v * 1000.0 for k, v in seconds.items()},
                      anomaly_score=pred.anomaly_score, by_anomaly=pred.by_anomaly)


def predict_paths(
    model: str | Path, paths: list[str], device: str = "auto", overlays: str | None = None,
    options: InferenceOptions | None = None, backend: str = "eager",
) -> Iterator[dict]:
    """Yields one JSON-ready dict per image; an undecodable image yields an ``error`` line and the rest go on.

    ``options``: tiling and region of interest (the whole frame by default); ``backend``: ``eager`` or one of the
    bundle's exports (``inspector export``), as ``inspector serve --backend``. Without ``overlays`` (drawn on the
    frame's own pixels), a large JPEG is decoded at reduced scale, as the service does.
    """
    import cv2

    from inspector.imaging.overlay import annotate
    from inspector.imaging.preprocess import FrameError, read_frame
    from inspector.inference.options import InferenceOptions
    from inspector.inference.predictor import Predictor

    predictor = Predictor.from_bundle(model, device, backend=backend, options=options or InferenceOptions())
    fit = None if overlays else predictor.decode_size
    for path in expand_paths(paths):
        start = time.perf_counter()
        try:
            frame = read_frame(path, fit=fit)
        except FrameError as err:
            yield error_line(str(path), "", err.reason, str(err))
            continue
        decode_s = time.perf_counter() - start
        pred = predictor.predict([frame])[0]
        line = prediction_line(str(path), pred, decode_s)
        if overlays:
            out = Path(overlays) / f"{path.stem}_overlay.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out), annotate(frame.image, pred.mask >= predictor.thresholds.mask, pred.verdict,
                                           pred.label, pred.defect_score, pred.regions))
            line["overlay"] = str(out)
        yield line


def run(args: argparse.Namespace) -> None:
    existing(args.model, "model bundle")
    for path in args.paths:
        existing(path, "image or folder")
    window = roi(args)
    start_torch(inference=True)
    from inspector.imaging.tiling import Window
    from inspector.inference.options import InferenceOptions

    tiling = {k: getattr(args, k) for k in ("tile", "tile_overlap") if getattr(args, k) is not None}
    options = InferenceOptions(**tiling, roi=Window(*window) if window else None)
    for line in predict_paths(args.model, args.paths, args.device, args.overlays, options, args.backend):
        print(json.dumps(line), flush=True)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="run a bundle on image files or folders; prints JSON lines")
    p.add_argument("--model", required=True)
    p.add_argument("paths", nargs="+")
    p.add_argument("--overlays", help="folder to write overlay PNGs to (verdict banner, mask outline, region boxes)")
    p.add_argument("--device", type=device, default="auto")
    p.add_argument("--backend", choices=BACKENDS, default="eager",
                   help="eager (default) or an export of the bundle (inspector export), as `inspector serve --backend`")
    add_tiling(p)
    p.set_defaults(func=run)
