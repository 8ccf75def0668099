"""The inferencer: a bundle in, predictions out. Knows nothing of gRPC or Prometheus.

The three stages (``prepare``, ``infer``, ``finish``) are public so a server can run them on different threads;
``predict`` chains them for a batch.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import weakref
from functools import partial
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from inspector.artifacts.bundle import Bundle, BundleMeta, load_bundle
from inspector.config import ANOMALY_CLASS, GOOD_CLASS, PreprocessSpec, Thresholds
from inspector.model.cpu import threads_here
from inspector.model.devices import resolve_device
from inspector.errors import UsageError
from inspector.inference.cuda_graphs import CudaGraphs
from inspector.inference.options import InferenceOptions
from inspector.inference.postprocess import ACCEPT, Region, anomaly_probability, decide, find_regions
from inspector.imaging.preprocess import Letterbox, inner_size, mask_to_frame, preprocess
from inspector.imaging.reduced import Frame
from inspector.imaging.tiling import Window, plan, stitch, tiles_apply


def cuda_rows(n: int) -> int:
    """Rows a batch of ``n`` parts runs as on CUDA: the next power of two up to 8, then the next multiple of 8.

    Each batch shape costs on its first pass (a CUDA graph's capture; with ``cudnn.benchmark``, the kernels' tuning:
    5 s on an H200 in fp16), so batches are padded to a few shapes, all warmed before serving
    (:meth:`Predictor.warm_up`). Padding rows cost little on a GPU, where a small batch leaves it mostly idle.
    """
    return 1 << (n - 1).bit_length() if n <= 8 else -(-n // 8) * 8


@dataclass
class Prediction:
    verdict: str  # ACCEPT | REVIEW | REJECT
    label: str  # predicted class under the thresholds (good unless rejected)
    defect_class: str  # most likely defect class
    defect_score: float  # 1 - p(good) blended with the mask's highest pixel (Thresholds.mask_weight)
    class_scores: dict[str, float]
    mask: np.ndarray  # (h, w) float32 defect probability at the frame's own size; all zero when accepted
    regions: list[Region]
    model_version: str
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, shared by the batch
    anomaly_score: float | None = None  # peak of the anomaly map (1.0 = the bank's reference); None without a bank
    anomaly_map: np.ndarray | None = None  # (h, w) float32 anomaly map at the frame's size; None without a bank
    by_anomaly: bool = False  # the verdict comes from the anomaly head, not the classifier


@dataclass
class Outputs:
    """The model's answers for a batch of parts, as probabilities (numpy)."""

    probs: np.ndarray  # (b, n_classes)
    masks: np.ndarray  # (b, H, W) defect probability
    anomaly: np.ndarray | None = None  # (b, H, W) anomaly map (1.0 = the bank's reference), when the bundle has one

    def row(self, i: int) -> Outputs:
        return Outputs(self.probs[i : i + 1], self.masks[i : i + 1], None if self.anomaly is None else self.anomaly[i : i + 1])

    @staticmethod
    def concat(rows: Sequence[Outputs]) -> Outputs:
        anomaly = None if rows[0].anomaly is None else np.concatenate([r.anomaly for r in rows])
        return Outputs(np.concatenate([r.probs for r in rows]), np.concatenate([r.masks for r in rows]), anomaly)


@dataclass
class Prepared:
    """Preprocessed frames ready for the model: one or more parts (whole frame, ROI or tiles) per frame."""

    batch: np.ndarray  # (parts, 3, H, W) float32
    owners: list[int]  # frame index of each part
    windows: list[Window]  # where each part lies in its frame
    geometry: list[Letterbox]  # how each part was letterboxed
    shapes: list[tuple[int, int]]  # (h, w) of each frame, its own size (also when decoded at reduced scale)


class Predictor:
    """Runs a bundle's model on decoded frames (grayscale or BGR uint8, any size), given as arrays or as
    :class:`~inspector.imaging.reduced.Frame` (decoded at reduced scale where :meth:`decode_size` allows it).

    Args:
        bundle: A loaded bundle; preprocessing and thresholds come from it, never from defaults here.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``...
        fp16: Half-precision autocast on CUDA.
        backend: ``eager`` (the bundle's weights in PyTorch), or one of its checked exports: ``torchscript``,
            ``onnx`` (on ONNX Runtime), ``openvino`` (on OpenVINO, its CPU device unless
            ``$INSPECTOR_OPENVINO_DEVICE`` names another), ``onnx-int8`` or ``openvino-int8`` (``export --int8``).
        options: Tiling, region of interest and test-time augmentation (by default the bundle's tile, which is 0,
            the whole frame, unless the model was trained on tiles; no region; once).
        cuda_graphs: Replay the network as CUDA graphs, one per padded batch shape (:mod:`cuda_graphs`; CUDA only).
        network: Runs this network (an nn.Module in eval mode, or an export's callable) instead of loading one by
            ``backend``: a model in training before its bundle exists, an export being checked before it is
            recorded. It takes ``(b, 3, H, W)`` and returns (logits, mask_logits[, anomaly_map]) like DefectNet.
    """

    def __init__(self, bundle: Bundle, device: str = "auto", fp16: bool = True, backend: str = "eager",
                 options: InferenceOptions = InferenceOptions(),
                 network: Callable[[torch.Tensor], Sequence[torch.Tensor | None]] | None = None,
                 cuda_graphs: bool = False) -> None:
        if options.tile is None:  # a model trained on tiles inspects tiles of the same side unless told otherwise
            options = dataclasses.replace(options, tile=bundle.spec.tile)
        self.options = options
        self.bundle = bundle
        self.device = resolve_device(device)
        self.spec = bundle.spec
        self.classes = bundle.classes
        self.thresholds = bundle.thresholds
        self.anomaly_only = bundle.meta.anomaly_only  # trained with --good-only
        self.autocast = fp16 and self.device.type == "cuda"
        if network is not None:
            self.model = network
        elif backend == "eager":
            self.model = bundle.build_model(self.device).to(memory_format=torch.channels_last)
        else:  # an export: torchscript, onnx, openvino, onnx-int8, openvino-int8 (UsageError for another name)
            from inspector.inference.runtimes import load_export

            self.model = load_export(bundle, backend, self.device)
        self._graphs: CudaGraphs | None = None
        self.lanes = 1  # passes that may run at once, each on its share of the CPU threads (open_lanes)
        self._lane_model: Callable | None = None
        self._lane_threads = 1
        if cuda_graphs:
            if self.device.type != "cuda":
                raise UsageError(f"CUDA graphs need a CUDA device; this predictor runs on {self.device}")
            method = weakref.WeakMethod(self._probabilities)  # no cycle: a replaced predictor is freed at once
            self._graphs = CudaGraphs(lambda x: method()(x))

    @classmethod
    def from_bundle(cls, path: str | Path, device: str = "auto", fp16: bool = True, backend: str = "eager",
                    options: InferenceOptions = InferenceOptions(), cuda_graphs: bool = False) -> Predictor:
        """The predictor of the bundle at ``path`` (a bundle folder, or a model folder's active version)."""
        return cls(load_bundle(path), device, fp16, backend, options, cuda_graphs=cuda_graphs)

    @classmethod
    def for_network(cls, network: torch.nn.Module, classes: Sequence[str], spec: PreprocessSpec,
                    device: str = "auto", fp16: bool = True) -> Predictor:
        """A predictor of a network that has no bundle yet (training: the anomaly head's scale is measured on what
        the service will compute), with the preprocessing and classes its bundle will have and default thresholds."""
        meta = BundleMeta(name="draft", version="v0", classes=tuple(classes), preprocess=spec, thresholds=Thresholds())
        return cls(Bundle(Path(), meta), device, fp16, network=network)

    @property
    def version(self) -> str:
        return f"{self.bundle.name}/{self.bundle.version}"

    def decode_size(self, h: int, w: int) -> tuple[int, int] | None:
        """The least (h, w) an ``h x w`` frame must be decoded at: the letterbox's inner size when the frame is
        inspected whole; None (all its pixels) when it is cut into tiles or a region of interest."""
        if self.options.roi is not None or tiles_apply(h, w, self.options.tile):
            return None
        return inner_size(h, w, self.spec)

    def prepare(self, frames: Sequence[np.ndarray | Frame]) -> Prepared:
        """Cuts each frame into its parts (whole, ROI or tiles), then letterboxes and normalises them by the spec.

        Raises:
            ValueError: A frame decoded at reduced scale that this predictor would cut (see :meth:`decode_size`).
        """
        tensors, owners, windows, geometry, shapes = [], [], [], [], []
        for i, frame in enumerate(frames):
            frame = frame if isinstance(frame, Frame) else Frame.whole(frame)
            for win, tensor, geo in self._parts(frame):
                tensors.append(tensor)
                owners.append(i)
                windows.append(win)
                geometry.append(geo)
            shapes.append((frame.height, frame.width))
        return Prepared(np.stack(tensors), owners, windows, geometry, shapes)

    def _parts(self, frame: Frame) -> list[tuple[Window, np.ndarray, Letterbox]]:
        """(window, model input, geometry) of each part of one frame."""
        h, w, image = frame.height, frame.width, frame.image
        if frame.reduced:  # the whole frame, letterboxed by its own size from fewer pixels
            if self.decode_size(h, w) is None:
                raise ValueError(f"a {w}x{h} px frame decoded at reduced scale cannot be cut into tiles or a region "
                                 "of interest; decode it whole")
            return [(Window(0, 0, w, h), *preprocess(image, self.spec, (h, w)))]
        windows = plan(h, w, self.options.tile, self.options.tile_overlap, self.options.roi)
        return [(win, *preprocess(image[win.y : win.y + win.h, win.x : win.x + win.w], self.spec)) for win in windows]

    def open_lanes(self, n: int) -> int:
        """Readies :meth:`infer` with ``lane=True``: up to ``n`` passes at once, from as many threads, each on its
        share of the CPU threads (torch's count when called: one each with 2 lanes on 2 threads): an ONNX Runtime
        session of that many threads, OpenVINO streams, PyTorch set to that many on the calling thread. Passes on
        few threads wait less for each other's threads, and frames decoded beside them slow them less
        (``bench/lanes_bench.py``). Returns the lanes open: 1 (none) off the CPU, or for an export whose runtime has
        none (OpenVINO on another device)."""
        if n < 2 or self.device.type != "cpu":
            return self.lanes
        if isinstance(self.model, torch.nn.Module):
            self._lane_model = self.model  # the same module: the calling thread's torch threads make the lane
        else:
            self._lane_model = getattr(self.model, "lanes", lambda n: None)(n)
        self.lanes = n if self._lane_model is not None else 1
        self._lane_threads = max(1, torch.get_num_threads() // n)
        return self.lanes

    @torch.inference_mode()
    def infer(self, batch: np.ndarray, lane: bool = False) -> Outputs:
        """``(b, 3, H, W)`` -> class probabilities, defect probabilities and anomaly maps of each part.

        ``lane``: run on a lane's share of the CPU threads, beside passes on other threads (:meth:`open_lanes` first).
        """
        n = len(batch)
        x = torch.from_numpy(batch)
        forward = self._probabilities if self._graphs is None else self._graphs
        if lane:
            if self._lane_model is None:
                raise UsageError("no lanes are open on this predictor: call open_lanes first")
            threads_here(self._lane_threads)
            forward = partial(self._probabilities, model=self._lane_model)
        elif self.device.type == "cuda":
            if (rows := cuda_rows(n)) > n:  # blank rows: one of a few shapes, each warmed at start
                x = torch.cat([x, x.new_zeros((rows - n, *x.shape[1:]))])
            x = x.pin_memory()  # page-locked: the copy below overlaps with the host
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        out = forward(x)
        if self.options.tta:  # test-time horizontal flip: average the two views, the flipped maps flipped back
            flipped = forward(x.flip(-1))
            out = [(a + (b if a.dim() == 2 else b.flip(-1))) / 2 for a, b in zip(out, flipped)]
        return Outputs(*(t[:n].cpu().numpy() for t in out))

    def warm_up(self, max_batch: int) -> None:
        """Runs every batch shape a batcher of ``max_batch`` whole frames will form on CUDA (captures their CUDA
        graphs) or, on the CPU, one pass of two frames (first passes are slow), and one in a lane where lanes are
        open."""
        frame = np.full((self.spec.height, self.spec.width), 127, np.uint8)
        sizes = sorted({cuda_rows(n) for n in range(1, max_batch + 1)}) if self.device.type == "cuda" else [2]
        for size in sizes:
            self.predict([frame] * size)
        if self._lane_model is not None:  # on a thread of its own: a thread that ran a lane keeps its torch threads
            warm = threading.Thread(target=self.infer, args=(self.prepare([frame]).batch, True), name="warm-lane")
            warm.start()
            warm.join()

    def _probabilities(self, x: torch.Tensor, model: Callable | None = None) -> list[torch.Tensor]:
        """(b, n_classes) class probabilities, (b, H, W) defect probabilities[, (b, H, W) anomaly map] from ``model``
        (the predictor's by default)."""
        model = self.model if model is None else model
        # no cast cache: it lives for one autocast block anyway, and CUDA graph captures need it off
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.autocast, cache_enabled=False):
            out = [t for t in model(x) if t is not None]  # a DefectOutput, or the plain tuple of an export
        maps = [out[1].float().sigmoid()] + [a.float() for a in out[2:]]
        return [out[0].float().softmax(dim=1)] + [m[:, 0] for m in maps]

    def finish(self, out: Outputs, prepared: Prepared, thresholds: Thresholds | None = None) -> list[Prediction]:
        """Decisions, masks at each frame's size and regions, from the model outputs of the prepared parts."""
        thresholds = thresholds or self.thresholds
        good = self.classes.index(GOOD_CLASS)
        preds = []
        for i, (h, w) in enumerate(prepared.shapes):
            parts = [k for k, owner in enumerate(prepared.owners) if owner == i]
            frame_mask = self._to_frame(out.masks, parts, prepared, h, w)
            anomaly_map = None if out.anomaly is None else self._to_frame(out.anomaly, parts, prepared, h, w)
            anomaly = None if anomaly_map is None else float(anomaly_map.max())
            if self.anomaly_only:  # the anomaly score is the defect score; its map is the mask
                s = anomaly_probability(anomaly)
                p, frame_mask = np.array([1.0 - s, s])[[good, 1 - good]], anomaly_probability(anomaly_map)
                decision = decide(p, self.classes, thresholds, float(frame_mask.max()))
            else:
                p = out.probs[min(parts, key=lambda k: out.probs[k][good])]  # a frame answers as its worst part
                decision = decide(p, self.classes, thresholds, float(frame_mask.max()), anomaly)
            if decision.verdict == ACCEPT:
                frame_mask.fill(0.0)  # an accepted part shows no defect area (a fresh array, never the model's)
            if decision.by_anomaly:  # the classifier saw nothing: mask and regions show where it differs from good
                frame_mask = anomaly_probability(anomaly_map)
            anomalous = decision.by_anomaly or self.anomaly_only
            blank = decision.verdict == ACCEPT and not decision.by_anomaly  # no area: no pass over the mask
            regions = [] if blank else find_regions(frame_mask, ANOMALY_CLASS if anomalous else decision.defect_class,
                                                    thresholds)
            preds.append(Prediction(
                verdict=decision.verdict,
                label=decision.label,
                defect_class=decision.defect_class,
                defect_score=decision.defect_score,
                class_scores={c: float(v) for c, v in zip(self.classes, p)},
                mask=frame_mask,
                regions=regions,
                model_version=self.version,
                anomaly_score=anomaly,
                anomaly_map=anomaly_map,
                by_anomaly=decision.by_anomaly or (self.anomaly_only and decision.verdict != ACCEPT),
            ))
        return preds

    @staticmethod
    def _to_frame(maps: np.ndarray, parts: list[int], prepared: Prepared, h: int, w: int) -> np.ndarray:
        """One frame's ``(h, w)`` map from the maps of its parts (letterbox undone, tiles stitched)."""
        return stitch(h, w, [prepared.windows[k] for k in parts],
                      [mask_to_frame(maps[k], prepared.geometry[k]) for k in parts])

    def predict(self, frames: Sequence[np.ndarray | Frame]) -> list[Prediction]:
        """Runs a batch of frames of any sizes through all three stages."""
        if not frames:
            return []
        t0 = time.perf_counter()
        prepared = self.prepare(frames)
        t1 = time.perf_counter()
        outputs = self.infer(prepared.batch)
        t2 = time.perf_counter()
        predictions = self.finish(outputs, prepared)
        timings = {"preprocess": t1 - t0, "infer": t2 - t1, "postprocess": time.perf_counter() - t2}
        for p in predictions:
            p.timings = timings
        return predictions
