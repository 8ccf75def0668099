#!/usr/bin/env bash
# GPU check, for a machine with one NVIDIA GPU: every GPU runtime of the bundle, end to end per 512x512 frame (decode +
# preprocess + model + postprocess through Predictor): PyTorch eager fp32 and fp16 autocast, torch.compile (CUDA
# graphs), ONNX Runtime with the CUDA and with the TensorRT execution provider. Per row: p50/p99 ms at batch 1 (closed
# loop, 200 frames after warm-up), frames/s at batch 8, peak GPU memory, setup time; each row in a process of its own
# under a time limit, and a row that cannot run says "not available: <why>". bench/gpu_bench.py does the work (its
# docstring says what each figure is).
#
#   bash bench/gpu_check.sh [MODEL] [OPTIONS]   MODEL: a bundle or models/<name> (default models/default)
#   bash bench/gpu_check.sh BUNDLE --cpu-dry-run   the same flow on the CPU, a few frames, nothing written
#   bash bench/gpu_check.sh [MODEL] --service      then also the service on the GPU (bench/serve_bench.py --device cuda,
#                                                  with CUDA graphs and without: sections gpu_serve_graphs and
#                                                  gpu_serve_eager; about 3 minutes more, and the service's packages:
#                                                  grpcio, -health-checking, -reflection, -status, protobuf 7)
# OPTIONS go to bench/gpu_bench.py: --compile-modes reduce-overhead max-autotune-no-cudagraphs (a row each; autotune
# takes minutes), --budget S (all rows, default 480), --logs DIR (each row's output), --frames N, --no-write.
#
# Figures go to bench/RESULTS.md, section gpu_check, with the GPU, its driver and CUDA version (nvidia-smi), torch and
# ONNX Runtime versions. Expected 2-6 minutes on an H200 (not yet timed there: compile and a TensorRT engine build take
# minutes each; every row is capped, and rows past --budget are reported as skipped).
# Exit status: 0 measured (and written); 3 no GPU here (one line says why, in seconds; nothing measured, RESULTS.md
# untouched); 4 a Python package the bench needs is missing; 1 no row measured; 2 no such bundle.
#
# On a lent GPU machine (the device tool's `run`: a copy of this tree, no network, python3 3.12 with torch cu130 and
# the CUDA 13 libraries; 64 MiB travel per call, 10 minutes per command, 15 minutes of device time in all):
#  - .venv does not travel: the script runs python3 there (PY=... to choose). The repo root goes on PYTHONPATH, so
#    `inspector` imports from the tree. Of what it imports, that machine lacks segmentation-models-pytorch (pure
#    Python, 155 KB); grpc and the generated protobuf code (older there) are not needed: gpu_bench.py imports only
#    bench/_results.py and bench/_frames.py, not bench/_harness.py or bench/serve_bench.py (--service needs them,
#    and these wheels: grpcio==1.85.3 grpcio-health-checking==1.85.1 grpcio-reflection==1.85.1
#    grpcio-status==1.85.3 protobuf==7.36.2 googleapis-common-protos==1.76.0, 8 MB with smp's).
#  - models/ is ignored by git: carry the model (models/default: 18 MiB, 35 with its exports).
#  - here, once: `echo /.whl/ >> .git/info/exclude`, then the wheels (Python 3.12, manylinux x86-64):
#      W='python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
#         --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
#         --platform manylinux2014_x86_64'
#      $W -d .whl segmentation-models-pytorch==0.6.0
#      $W -d /tmp/ort-gpu onnxruntime-gpu==1.31.1        (not into .whl: see below)
#    onnxruntime-gpu 1.31.1 is the newest on PyPI (the .venv's onnxruntime, CPU only, is 1.32.0; the machine has
#    onnxruntime 1.30.0, CPU only, which this one shadows from /tmp/site: both are the `onnxruntime` module). Its
#    CUDA EP is built for CUDA 13 (libcudart.so.13, libcublas.so.13, cuDNN 9: what torch cu130 loads; not CUDA 12),
#    its TensorRT EP for TensorRT 10 (libnvinfer.so.10). Its wheel is 256 MB, over the 64 MiB one call carries:
#    without it both ONNX Runtime rows say "not available" and the rest runs. To bring it anyway (planned, not yet
#    run there), in four calls while the machine stays warm (unpacked: 350 MB, 284 the CUDA EP library):
#    `xz -9` that library alone (186 MB, 2.5 min on 2 cores) and `split -n 3` it; tar + `xz -9` the rest (13 MB).
#    Carry the rest beside the model and .whl in the first call (which can run --service), one piece in each of the
#    next three, each copied to /tmp there; then `cat` the pieces | `xz -d` into the unpacked rest, put that folder
#    first on PYTHONPATH (it shadows the machine's onnxruntime) and run the bench.
#  - TensorRT: ORT 1.31.1 loads TensorRT 10 only, i.e. tensorrt-cu13-libs 10.x (10.16.1.11; the 11.x wheels bring
#    libnvinfer.so.11), far over what a call carries: in practice the TensorRT row says "not available". Where
#    `tensorrt_libs` imports, this script puts its folder on LD_LIBRARY_PATH for the TensorRT EP.
#  - the run (carry [".whl", "models/default"], timeout_s 600; RESULTS.md written there comes back only through $OUT):
#      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
#        .whl/*.whl && export PYTHONPATH=/tmp/site || exit; PY=python3 bash bench/gpu_check.sh --logs $OUT/logs;
#      cp bench/RESULTS.md $OUT/
#    then take the gpu_check section from the RESULTS.md under files_at into this tree's bench/RESULTS.md.
#    Measured 2026-11-30 on an H200 (bench/RESULTS.md): the machine's start took about 30 s, the rows 4 minutes
#    with the torch.compile row (1 minute of it), serve_bench about 1.5 minutes per run.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PY:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
export OMP_WAIT_POLICY=PASSIVE
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"  # `inspector` from this tree where it is not installed
MODEL=models/default
if [[ $# -gt 0 && $1 != -* ]]; then MODEL=$1; shift; fi
service=0
args=()
for arg in "$@"; do
  if [[ $arg == --service ]]; then service=1; else args+=("$arg"); fi
done
# TensorRT's libraries from the tensorrt-cu13-libs wheel, where installed: ONNX Runtime's TensorRT EP dlopens them
if trt_libs=$("$PY" -c 'import os, tensorrt_libs; print(os.path.dirname(tensorrt_libs.__file__))' 2>/dev/null); then
  export LD_LIBRARY_PATH="$trt_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
"$PY" bench/gpu_bench.py --model "$MODEL" ${args[@]+"${args[@]}"}
if [[ $service == 1 && " ${args[*]-} " != *" --cpu-dry-run "* ]]; then
  for graphs in --cuda-graphs --no-cuda-graphs; do
    section=gpu_serve_graphs; [[ $graphs == --no-cuda-graphs ]] && section=gpu_serve_eager
    "$PY" bench/serve_bench.py --model "$MODEL" --device cuda --batch 8 --backends eager --sizes 512x512 \
      --frames 200 --section "$section" "$graphs"
  done
fi
