#!/usr/bin/env bash
# The GPU checks of the fused ops in one go, on a machine with CUDA, nvcc and PyTorch installed:
# build the extension, run the op tests (CPU and CUDA), time the ops end to end against a copy of
# the logits and Liger-Kernel (queued calls, then one call at a time), compare the ways of holding
# a row on chip, profile the kernels, and split the host's share of a call.  Logs and JSON go to
# $1 (default: benchmarks/results); the name of the GPU becomes part of the JSON's file names.
#
#     bash benchmarks/gpu_checks.sh [OUTPUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
gpu=$(python3 -c "import torch; print(torch.cuda.get_device_name().split()[1].lower())")
python3 -m pip install -q --no-build-isolation --no-deps -e . 2>&1 | tail -3
python3 -c "from rlgan_core import extension; print(extension.status())"
python3 -m pytest tests/test_ops.py -q -rf -p no:cacheprovider 2>&1 | tee "$out/gpu_test_ops.log" | grep -E "^FAILED|passed|failed"
python3 benchmarks/throughput_cuda.py "$out/gpu_${gpu}_throughput.json" 2>&1 | tee "$out/gpu_${gpu}_throughput.txt"
python3 benchmarks/row_cache_sweep.py 2>&1 | tee "$out/gpu_${gpu}_row_sweep.txt"
python3 -m pytest benchmarks/test_liger.py -q -p no:cacheprovider \
    --benchmark-json="$out/gpu_${gpu}_liger.json" 2>&1 | tail -3
python3 benchmarks/profile_policy_cuda.py > "$out/gpu_${gpu}_profile.txt" 2>&1
python3 benchmarks/host_overhead_cuda.py > "$out/gpu_${gpu}_host_overhead.txt" 2>&1
python3 benchmarks/report.py "$out/gpu_${gpu}_liger.json"
cat "$out/gpu_${gpu}_profile.txt" "$out/gpu_${gpu}_host_overhead.txt"
