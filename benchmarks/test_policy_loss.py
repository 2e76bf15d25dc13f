"""policy_gradient_loss: fused, fused in place, eager fallback, torch.compile(fallback); beside a
plain copy of the logits (the roofline: one read and one write), per shape, dtype and device."""

import os

import pytest
import torch

from rlgan_core import extension, ops

from conftest import DEVICES, synchronize

SHAPES = [(1024, 5000), (4096, 5000), (1024, 32000), (4096, 32000), (16384, 5000), (16384, 32000),
          (1024, 128256), (4096, 128256), (16384, 128256)]
if os.environ.get("RLGAN_BENCH_SHAPES"):
    SHAPES = [tuple(map(int, s.split("x"))) for s in os.environ["RLGAN_BENCH_SHAPES"].split(",")]
DTYPES = [torch.float32] + ([torch.bfloat16] if os.environ.get("RLGAN_BENCH_BF16") else [])
IMPLEMENTATIONS = ["copy", "fused", "fused_inplace", "fallback", "compiled"]
ENTROPY = 0.01
CPU_BYTES_LIMIT = 16 * 2**30  # this machine's 24 GiB, less room for the rest


def bytes_needed(n, v, dtype, implementation):
    """Memory of one run: the logits and their per-round copy, plus the output or gradient, or the
    fallback's float32 temporaries (log-softmax, softmax, entropy products, gradients: about 6)."""
    temporaries = 1 if implementation in ("copy", "fused", "fused_inplace") else 6
    return n * v * (2 * dtype.itemsize + temporaries * 4)


def rounds_for(n, v, device, implementation):
    if device == "cuda":
        return 50
    slow = implementation in ("fallback", "compiled")
    return max(5, min(20, int(2e9 / (n * v * (40 if slow else 4)))))


compiled_fallback = torch.compile(ops.policy_gradient_loss_fallback, dynamic=False)


@pytest.mark.parametrize("mode", ["forward_backward", "forward"])
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n,v", SHAPES, ids=[f"N{n}-V{v}" for n, v in SHAPES])
@pytest.mark.parametrize("device", DEVICES)
def test_policy_loss(benchmark, measure_fn, device, n, v, dtype, implementation, mode):
    needed = bytes_needed(n, v, dtype, implementation)
    if device == "cpu" and needed > CPU_BYTES_LIMIT:
        pytest.skip(f"{implementation} at N={n}, V={v} needs about {needed / 2**30:.0f} GiB, more than the "
                    f"{CPU_BYTES_LIMIT / 2**30:.0f} GiB a run may take on this 24 GiB machine")
    if implementation == "copy" and mode == "forward":
        pytest.skip("the roofline is timed once per group")
    if implementation == "fused_inplace" and mode == "forward":
        pytest.skip("in place only differs from fused when a gradient is asked for")
    benchmark.group = f"policy_gradient_loss N={n} V={v} {str(dtype)[6:]} {device} {mode}"
    torch.manual_seed(0)
    source = torch.randn(n, v, device=device, dtype=dtype)
    actions = torch.randint(0, v, (n,), device=device)
    advantages = torch.randn(n, device=device)
    backward = mode == "forward_backward"

    if implementation == "copy":
        destination = torch.empty_like(source)

        def run(x):
            destination.copy_(x)

        def setup():
            return (source,)
    else:
        if implementation == "fallback" or implementation == "compiled":
            extension.set_backend("fallback")
        else:
            extension.set_backend("fused")
        loss_fn = {
            "fused": ops.policy_gradient_loss,
            "fused_inplace": lambda *a, **k: ops.policy_gradient_loss(*a, inplace=True, **k),
            "fallback": ops.policy_gradient_loss_fallback,
            "compiled": compiled_fallback,
        }[implementation]
        def setup():
            # fresh logits each round (the in-place variant consumes its input); untimed
            x = source.clone().requires_grad_(backward)
            synchronize(device)
            return (x,)

        def run(x):
            loss = loss_fn(x, actions, advantages, entropy_coef=ENTROPY)
            if backward:
                loss.backward()

    measure_fn(benchmark, run, setup, device, rounds_for(n, v, device, implementation),
               {"n": n, "v": v, "dtype": str(dtype), "bytes": 2 * n * v * dtype.itemsize,
                "implementation": implementation, "mode": mode})
    extension.set_backend(None)
