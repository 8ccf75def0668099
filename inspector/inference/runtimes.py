"""Running an export: TorchScript, ONNX Runtime or OpenVINO behind the network's call signature, so the predictor
runs any backend the same way (``Predictor(bundle, backend="openvino")``).

Every runtime takes its inference threads from the process's thread budget (``torch.get_num_threads()``, which
``inspector serve`` and the tests set), so an export does not start one thread per core beside the service's decode
threads: on 2 cores, two pools of 2 busy threads each would halve both.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from pathlib import Path
from types import ModuleType
from typing import Callable

import numpy as np
import torch

from inspector.artifacts.bundle import Bundle
from inspector.artifacts.export import EXPORT_DIR, FILES, read_record, verified_file
from inspector.errors import MissingPathError, UsageError

# The graph file of each export format; the INT8 ones are quantized copies of the fp32 graph (inspector export --int8)
GRAPHS = FILES | {"openvino": "model.xml", "onnx-int8": "model.int8.onnx", "openvino-int8": "model.int8.xml"}
BACKENDS = ("eager", *GRAPHS)  # what Predictor(backend=...) and `inspector serve --backend` take
OPENVINO_DEVICE_ENV = "INSPECTOR_OPENVINO_DEVICE"  # OpenVINO device of the openvino backends (default: CPU)


def runtime_of(fmt: str) -> str:
    """The runtime that runs an export format: ``onnx-int8`` -> ``onnx``, ``openvino`` -> ``openvino``."""
    if fmt not in GRAPHS:
        raise UsageError(f"unknown backend {fmt!r}; choose one of {', '.join(BACKENDS)}")
    return fmt.removesuffix("-int8")


def import_openvino() -> ModuleType:
    """``openvino``, imported with its usage telemetry off.

    OpenVINO (and NNCF) send usage events to a web analytics service unless the user opted out in a file under
    ``$HOME``; an inspection station sends nothing anywhere. Their telemetry package, marked missing for this process
    before they load, makes both fall back to their own no-op stubs.
    """
    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]  # `import` of it raises ImportError
    import openvino

    return openvino


class OnnxModel:
    """An ONNX Runtime session called like the network: ``(b, 3, H, W)`` tensor -> (logits, mask_logits[, anomaly]).

    ``threads``: its intra-op threads; None: ``torch.get_num_threads()``, the budget every runtime shares.
    """

    def __init__(self, path: Path, device: torch.device, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        self.threads = threads or torch.get_num_threads()
        options.intra_op_num_threads = self.threads
        # idle threads sleep instead of spinning: in the service, decoding and postprocessing run beside each pass
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.path, self.device = path, device

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.session.run(None, {"image": x.detach().cpu().float().contiguous().numpy()})
        return tuple(torch.from_numpy(o).to(self.device) for o in outputs)

    def eval(self) -> OnnxModel:
        return self

    def lanes(self, n: int) -> OnnxModel | None:
        """A session of ``1/n`` of the threads that ``n`` threads call at once (a session runs concurrent calls); None
        on CUDA."""
        return None if self.device.type == "cuda" else OnnxModel(self.path, self.device, max(1, self.threads // n))


class OpenVinoModel:
    """An OpenVINO compiled model called like the network: ``(b, 3, H, W)`` -> (logits, mask_logits[, anomaly]).

    Args:
        path: The IR's ``.xml`` (its weights in the ``.bin`` of the same name).
        device: The torch device the outputs go to (the predictor's).
        ov_device: OpenVINO's device: ``CPU`` (default), ``GPU`` (an Intel integrated or discrete GPU), ``AUTO``;
            ``$INSPECTOR_OPENVINO_DEVICE`` when None. Only ``CPU`` reproduces fp32 within the export tolerance: the
            GPU plugin runs in fp16 by default.
        threads: Inference threads on the CPU; None: ``torch.get_num_threads()``, the budget every runtime shares.
        streams: Passes that run at once on the CPU, from as many calling threads, the threads shared among them
            (OpenVINO's streams); 1: one pass at a time on all the threads.
    """

    def __init__(self, path: Path, device: torch.device, ov_device: str | None = None,
                 threads: int | None = None, streams: int = 1) -> None:
        ov = import_openvino()
        self.ov_device = (ov_device or os.environ.get(OPENVINO_DEVICE_ENV) or "CPU").upper()
        core = ov.Core()
        available = core.available_devices  # e.g. ["CPU", "GPU"]
        if self.ov_device.split(":")[0].split(".")[0] not in {d.split(".")[0] for d in available} | {"AUTO"}:
            raise UsageError(f"OpenVINO device {self.ov_device!r} is not on this machine; available: "
                             f"{', '.join(available)} (or AUTO); set ${OPENVINO_DEVICE_ENV}")
        config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY" if streams == 1 else "THROUGHPUT"}
        self.threads = threads or torch.get_num_threads()
        if self.ov_device == "CPU":
            config |= {
                "INFERENCE_NUM_THREADS": self.threads,
                "NUM_STREAMS": streams,
                "INFERENCE_PRECISION_HINT": "f32",  # OpenVINO may pick bf16 on CPUs with it; parity is in fp32
                "ENABLE_CPU_PINNING": False,  # threads pinned to cores would fight the decode threads for them
            }
        self.compiled = core.compile_model(core.read_model(str(path)), self.ov_device, config)
        self.path, self.device = path, device
        self._local = threading.local()  # an InferRequest serves one thread at a time: one per calling thread

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        batch = np.ascontiguousarray(x.detach().cpu().float().numpy())  # (b, 3, H, W) whatever x's memory format
        results = request.infer({0: batch})  # copies of the outputs, in the model's output order
        return tuple(torch.from_numpy(np.asarray(results[out])).to(self.device) for out in self.compiled.outputs)

    def eval(self) -> OpenVinoModel:
        return self

    def lanes(self, n: int) -> OpenVinoModel | None:
        """The model compiled again as ``n`` streams sharing its threads, for ``n`` calling threads at once; None on
        a device other than the CPU."""
        if self.ov_device != "CPU":
            return None
        return OpenVinoModel(self.path, self.device, self.ov_device, threads=self.threads, streams=n)


def _torchscript(path: Path, device: torch.device) -> Callable:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location=device).eval()


RUNTIMES: dict[str, Callable[[Path, torch.device], Callable]] = {
    "torchscript": _torchscript, "onnx": OnnxModel, "openvino": OpenVinoModel}


def load_file(path: Path, fmt: str, device: torch.device) -> Callable:
    """The export file ``path`` of format ``fmt``, callable like the network (no checksum: see :func:`load_export`)."""
    return RUNTIMES[runtime_of(fmt)](path, device)


def load_export(bundle: Bundle, fmt: str, device: torch.device) -> Callable:
    """The bundle's export in ``fmt``, every file's checksum verified, callable like the network."""
    runtime = runtime_of(fmt)  # an unknown backend is a usage error before any file is looked for
    if fmt != runtime and fmt not in read_record(bundle.path / EXPORT_DIR).get("formats", {}):
        raise MissingPathError(f"{bundle.path} has no {fmt} export; run `inspector export --format {runtime} --int8`")
    return load_file(verified_file(bundle, fmt), fmt, device)
