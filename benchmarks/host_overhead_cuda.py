"""Where the time of the fused policy loss goes on CUDA beyond its kernel: the whole op forward+
backward, against the same kernel behind a bare ``autograd.Function`` whose backward returns the
gradient without a host read, one whose backward reads the incoming gradient on the host
(``item()``), and no autograd at all (the gradient assigned by hand).  Medians of 40 calls, each
from fresh logits, timed with a device sync at the end.

    python benchmarks/host_overhead_cuda.py
"""

import time

import torch

from rlgan_core import extension, ops

extension.set_backend("fused")
extension.status()
op = torch.ops.rlgan.policy_gradient_loss.default


def median_us(fn, setup, reps=40):
    times = []
    for i in range(reps + 5):
        args = setup()
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn(*args)
        torch.cuda.synchronize()
        if i >= 5:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1e6


for n, v, dtype in [(4096, 32768, torch.float32), (16384, 128256, torch.bfloat16)]:
    source = torch.randn(n, v, device="cuda", dtype=dtype)
    actions = torch.randint(0, v, (n,), device="cuda")
    advantages = torch.randn(n, device="cuda")
    destination = torch.empty_like(source)

    def fresh():
        return (source.clone().requires_grad_(),)

    class NoHostRead(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            loss, grad = op(x, actions, advantages, 0.01, -100, "mean", True)
            ctx.save_for_backward(grad)
            return loss

        @staticmethod
        def backward(ctx, grad_loss):
            return ctx.saved_tensors[0]

    class HostRead(NoHostRead):
        @staticmethod
        def backward(ctx, grad_loss):
            (grad,) = ctx.saved_tensors
            return grad if grad_loss.item() == 1 else grad * grad_loss

    def by_hand(x):
        with torch.no_grad():
            _, grad = op(x, actions, advantages, 0.01, -100, "mean", True)
        x.grad = grad

    print(f"N={n} V={v} {dtype}")
    rows = {
        "copy": (lambda x: destination.copy_(x), lambda: (source,)),
        "policy_gradient_loss fwd+bwd": (
            lambda x: ops.policy_gradient_loss(x, actions, advantages, entropy_coef=0.01).backward(), fresh),
        "Function, backward without a host read": (lambda x: NoHostRead.apply(x).backward(), fresh),
        "Function, backward reads grad on host": (lambda x: HostRead.apply(x).backward(), fresh),
        "no autograd (gradient by hand)": (by_hand, fresh),
    }
    for name, (fn, setup) in rows.items():
        print(f"  {name:40s} {median_us(fn, setup):8.1f} us", flush=True)
