"""Importing inspector changes nothing process-wide: no environment variable, matplotlib backend, torch flag or
thread count is set by an import (the commands that need them set them when they start)."""

import json
import os
import subprocess
import sys

THIRD_PARTY = ("torch", "torchvision", "timm", "segmentation_models_pytorch", "cv2", "grpc", "onnx", "onnxruntime",
               "onnxscript", "matplotlib", "prometheus_client", "tqdm", "numpy", "google.protobuf")
SNAPSHOT = """
def snapshot():
    import matplotlib, torch
    return {"environ": dict(os.environ), "threads": torch.get_num_threads(),
            "interop": torch.get_num_interop_threads(), "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_deterministic": torch.backends.cudnn.deterministic, "tf32": torch.backends.cuda.matmul.allow_tf32,
            "matmul_precision": torch.get_float32_matmul_precision(), "backend": matplotlib.get_backend(),
            "default_dtype": str(torch.get_default_dtype())}
"""


def test_importing_every_module_sets_nothing_process_wide():
    code = f"import importlib, json, os, pkgutil, sys\nTHIRD_PARTY = {THIRD_PARTY!r}\n" + SNAPSHOT + """
for library in THIRD_PARTY:  # their own import-time effects (cv2 sets LD_LIBRARY_PATH...) are not inspector's
    importlib.import_module(library)
import inspector
before = snapshot()
names = [m.name for m in pkgutil.walk_packages(inspector.__path__, "inspector.") if m.name != "inspector.__main__"]
for name in names:
    importlib.import_module(name)
after = snapshot()
print(json.dumps({"names": names, "changed": {k: [before[k], after[k]] for k in before if before[k] != after[k]},
                  "pyplot": "matplotlib.pyplot" in sys.modules}))
"""
    env = {**os.environ, "MPLBACKEND": "svg"}
    env.pop("OMP_WAIT_POLICY", None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert {"inspector.cli", "inspector.evaluation.plots", "inspector.inference.predictor", "inspector.service.server"} <= set(
        result["names"])
    assert result["changed"] == {}
    assert result["pyplot"] is False


def test_drawing_evaluation_plots_keeps_the_callers_matplotlib_backend(tmp_path):
    code = f"""
import sys
import matplotlib
import numpy as np
from inspector.evaluation.plots import plot_confusion, plot_training_curves
plot_confusion(np.array([[3, 1], [0, 4]]), ["good", "crack"], {str(tmp_path / "c.png")!r})
plot_training_curves([{{"epoch": 1, "train_loss": 1.0}}], {str(tmp_path / "t.png")!r})
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MPLBACKEND": "svg"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["svg", "False"]
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
