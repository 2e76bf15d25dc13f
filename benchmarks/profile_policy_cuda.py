"""Kernel-level profile of the fused policy loss (forward+backward) on CUDA, with the copy
roofline beside it: which kernels run, and how long each takes on the device.

    python benchmarks/profile_policy_cuda.py
"""

import torch
from torch.profiler import ProfilerActivity, profile

from rlgan_core import extension, ops

extension.set_backend("fused")
for n, v, dtype in [(4096, 32768, torch.float32), (16384, 32000, torch.float32), (16384, 128256, torch.bfloat16)]:
    source = torch.randn(n, v, device="cuda", dtype=dtype)
    actions = torch.randint(0, v, (n,), device="cuda")
    advantages = torch.randn(n, device="cuda")
    for inplace in (False, True):
        for _ in range(3):
            x = source.clone().requires_grad_()
            ops.policy_gradient_loss(x, actions, advantages, entropy_coef=0.01, inplace=inplace).backward()
        torch.cuda.synchronize()
        xs = [source.clone().requires_grad_() for _ in range(5)]
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for x in xs:
                ops.policy_gradient_loss(x, actions, advantages, entropy_coef=0.01, inplace=inplace).backward()
            torch.cuda.synchronize()
        print(f"--- N={n} V={v} {dtype} inplace={inplace}: device time per call by kernel")
        for event in sorted(prof.key_averages(), key=lambda e: -e.device_time_total)[:6]:
            print(f"{event.device_time_total / 5 / 1e3:8.3f} ms  {event.count // 5:3d}x  {event.key[:90]}")
    destination = torch.empty_like(source)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            destination.copy_(source)
        torch.cuda.synchronize()
    copy = sum(e.device_time_total for e in prof.key_averages()) / 5 / 1e3
    print(f"copy of the logits: {copy:.3f} ms")
