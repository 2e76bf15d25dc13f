"""Time the CUDA policy loss (forward+backward, fused, calls queued as in
``benchmarks/throughput_cuda.py``) with each way of holding a row between its two passes: the
default (registers, then registers plus shared memory), shared memory only, or read twice (the
second pass mostly from L2).

    python benchmarks/row_cache_sweep.py            # runs one child process per variant
"""

import os
import subprocess
import sys

import torch

SHAPES = [(4096, 32768, torch.float32), (4096, 32768, torch.bfloat16), (16384, 8192, torch.float32),
          (4096, 65536, torch.float32), (4096, 131072, torch.bfloat16), (16384, 128256, torch.bfloat16)]
VARIANTS = {  # name: environment
    "default": {},
    "shared memory": {"RLGAN_CUDA_REGISTER_ROWS": "0", "RLGAN_CUDA_ROW_CACHE_BYTES": str(160 * 1024)},
    "read twice": {"RLGAN_CUDA_REGISTER_ROWS": "0", "RLGAN_CUDA_ROW_CACHE_BYTES": "0"},
}


def child():
    from rlgan_core import extension, ops
    from throughput_cuda import queued_ms

    extension.set_backend("fused")
    for n, v, dtype in SHAPES:
        source = torch.randn(n, v, device="cuda", dtype=dtype)
        actions = torch.randint(0, v, (n,), device="cuda")
        advantages = torch.randn(n, device="cuda")
        destination = torch.empty_like(source)
        ms = queued_ms(lambda x: ops.policy_gradient_loss(x, actions, advantages, entropy_coef=0.01).backward(),
                       source.clone)
        copy = queued_ms(lambda x: destination.copy_(x), source.clone, needs_grad=False)
        gbps = 2 * n * v * dtype.itemsize / ms / 1e6
        print(f"{os.environ['RLGAN_VARIANT']:>13} N={n} V={v} {str(dtype)[6:]:9} {ms:.3f} ms {gbps:.0f} GB/s, "
              f"copy {copy:.3f} ms: {copy / ms:.0%} of the copy roofline", flush=True)
        del source, destination
        torch.cuda.empty_cache()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        child()
    else:
        for name, variant in VARIANTS.items():
            env = {**os.environ, **variant, "RLGAN_VARIANT": name}
            subprocess.run([sys.executable, __file__, "child"], env=env, check=True)
