"""The fused policy loss on CUDA as a training loop sees it: calls queued back to back, the host
ahead of the device, forward+backward from Python, against a copy of the logits and Liger-Kernel.

``benchmarks/test_liger.py`` times one call at a time, waiting for the device after each, so its
figures include the host's work before the first kernel starts (Python, autograd; tens of
microseconds).  In a training loop the host queues the next work while the device runs, and that
cost is hidden whenever the device is the bottleneck.  Here every row queues ``CALLS`` calls on
fresh inputs (cloned beforehand), and the time between two device events around them, divided by
``CALLS``, is the figure; medians of ``REPEATS``.  Writes JSON when given a path.

    python benchmarks/throughput_cuda.py [OUTPUT.json]
"""

import json
import sys

import torch

from rlgan_core import extension, ops

SHAPES = [(4096, 32768, torch.float32), (16384, 32000, torch.float32), (16384, 128256, torch.bfloat16)]
CALLS, REPEATS, ENTROPY = 4, 7, 0.01


def queued_ms(step, make_input, needs_grad=True):
    """Median over REPEATS of the device time of CALLS queued calls of ``step``, per call."""
    times = []
    for repeat in range(REPEATS + 1):
        inputs = [make_input().requires_grad_(needs_grad) for _ in range(CALLS)]
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for x in inputs:
            step(x)
        end.record()
        torch.cuda.synchronize()
        if repeat:  # the first is a warm-up
            times.append(start.elapsed_time(end) / CALLS)
        del inputs
    return sorted(times)[len(times) // 2]


def main():
    extension.set_backend("fused")
    try:
        from liger_kernel.transformers import LigerCrossEntropyLoss
    except ImportError:
        LigerCrossEntropyLoss = None
    rows = []
    for n, v, dtype in SHAPES:
        torch.manual_seed(0)
        source = torch.randn(n, v, device="cuda", dtype=dtype)
        actions = torch.randint(0, v, (n,), device="cuda")
        advantages = torch.randn(n, device="cuda")
        destination = torch.empty_like(source)
        steps = {
            "copy": (lambda x: destination.copy_(x), False),
            "rlgan": (lambda x: ops.policy_gradient_loss(x, actions, advantages, entropy_coef=ENTROPY).backward(), True),
            "rlgan_inplace": (lambda x: ops.policy_gradient_loss(x, actions, advantages, entropy_coef=ENTROPY,
                                                                 inplace=True).backward(), True),
        }
        if LigerCrossEntropyLoss is not None:
            liger = LigerCrossEntropyLoss()
            steps["liger_cross_entropy"] = (lambda x: liger(x, actions).backward(), True)
        times = {name: queued_ms(step, source.clone, grad) for name, (step, grad) in steps.items()}
        for name, ms in times.items():
            row = {"n": n, "v": v, "dtype": str(dtype)[6:], "implementation": name, "ms": ms,
                   "gb_per_s": 2 * n * v * dtype.itemsize / ms / 1e6, "of_copy": times["copy"] / ms,
                   "device_name": torch.cuda.get_device_name()}
            rows.append(row)
            print(f"N={n:5d} V={v:6d} {row['dtype']:8s} {name:20s} {ms:7.3f} ms {row['gb_per_s']:6.0f} GB/s "
                  f"{row['of_copy']:5.0%} of copy", flush=True)
        del source, destination
        torch.cuda.empty_cache()
    ops.check_pending_errors()
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            json.dump({"torch": torch.__version__, "calls": CALLS, "repeats": REPEATS, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
