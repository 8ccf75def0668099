#!/usr/bin/env bash
# GPU check, for a machine with an NVIDIA GPU: CUDA and fp16 work, then the in-process and service benchmarks at
# 512x512 with fp16 autocast (p50/p99 per frame at batch 1, frames/s at the best batch, peak GPU memory).
#   bash bench/gpu_check.sh [MODEL]        (MODEL: a bundle or models/<name>; default models/default)
# Figures go to bench/RESULTS.md (section gpu_check) with the GPU model.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
MODEL=${1:-models/default}
"$PY" - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device visible"
x = torch.randn(64, 64, device="cuda", dtype=torch.float16)
assert torch.isfinite(x @ x).all()
print(f"CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}, fp16 matmul ok")
PY
for batch in 8 32; do
  "$PY" bench/serve_bench.py --model "$MODEL" --device cuda --batch "$batch" --backends eager \
    --frames 400 --section "gpu_check_batch_$batch"
done
