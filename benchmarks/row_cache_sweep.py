"""Time the CUDA policy loss (forward+backward, fused): rows in registers, in shared memory, or
read twice (second pass mostly from L2).

    python benchmarks/row_cache_sweep.py            # runs one child process per budget
"""

import os
import subprocess
import sys

import torch

SHAPES = [(4096, 32768, torch.float32), (4096, 32768, torch.bfloat16), (16384, 8192, torch.float32),
          (4096, 65536, torch.bfloat16)]
VARIANTS = {  # name: environment
    "registers": {},
    "shared memory": {"RLGAN_CUDA_REGISTER_ROWS": "0", "RLGAN_CUDA_ROW_CACHE_BYTES": str(160 * 1024)},
    "read twice": {"RLGAN_CUDA_REGISTER_ROWS": "0", "RLGAN_CUDA_ROW_CACHE_BYTES": "0"},
}


def child():
    from rlgan_core import extension, ops

    extension.set_backend("fused")
    for n, v, dtype in SHAPES:
        source = torch.randn(n, v, device="cuda", dtype=dtype)
        actions = torch.randint(0, v, (n,), device="cuda")
        advantages = torch.randn(n, device="cuda")
        grad_out = torch.ones((), device="cuda")
        times = []
        for _ in range(30):
            x = source.clone().requires_grad_()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            loss = ops.policy_gradient_loss(x, actions, advantages, entropy_coef=0.01)
            loss.backward(grad_out)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        median = sorted(times[5:])[len(times[5:]) // 2]
        copy = copy_time(source)
        gbps = 2 * n * v * dtype.itemsize / median / 1e6
        print(f"{os.environ['RLGAN_VARIANT']:>13} N={n} V={v} {str(dtype)[6:]:9} {median:.3f} ms {gbps:.0f} GB/s, copy {copy:.3f} ms: {copy / median:.0%} of the copy roofline")


def copy_time(source):
    """Median time of one read and one write of ``source`` (the roofline), by CUDA events."""
    destination = torch.empty_like(source)
    times = []
    for _ in range(30):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        destination.copy_(source)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times[5:])[len(times[5:]) // 2]


if __name__ == "__main__":
    if len(sys.argv) > 1:
        child()
    else:
        for name, variant in VARIANTS.items():
            env = {**os.environ, **variant, "RLGAN_VARIANT": name}
            subprocess.run([sys.executable, __file__, "child"], env=env, check=True)
