"""The fused policy loss end to end on a GPU, against a copy of the logits and Liger-Kernel.

Forward+backward, the whole op from Python (wall clock around the call and ``backward()``, then a
device sync), at the shapes of the GPU targets.  Rows:

* ``copy``: ``dst.copy_(logits)``, one read and one write (the roofline);
* ``rlgan``: ``policy_gradient_loss`` as a user calls it by default (a new gradient), with the
  entropy bonus;
* ``rlgan_inplace``: the same with ``inplace=True``;
* ``rlgan_cross_entropy``: our op on Liger's function (every advantage 1, no entropy), in place;
* ``liger_cross_entropy``: Liger-Kernel's ``LigerCrossEntropyLoss`` (writes its gradient over the
  logits in the forward pass, like ``inplace=True``).

Runs only where CUDA and ``liger_kernel`` are installed.
"""

import pytest
import torch

from rlgan_core import extension, ops

from conftest import synchronize

liger = pytest.importorskip("liger_kernel.transformers")
if not torch.cuda.is_available():
    pytest.skip("Liger-Kernel runs on CUDA", allow_module_level=True)

SHAPES = [(4096, 32768, torch.float32), (16384, 32000, torch.float32), (16384, 128256, torch.bfloat16)]
IMPLEMENTATIONS = ["copy", "rlgan", "rlgan_inplace", "rlgan_cross_entropy", "liger_cross_entropy"]
ENTROPY = 0.01


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("n,v,dtype", SHAPES, ids=[f"N{n}-V{v}-{str(d)[6:]}" for n, v, d in SHAPES])
def test_against_liger(benchmark, measure_fn, n, v, dtype, implementation):
    benchmark.group = f"fused losses vs Liger-Kernel N={n} V={v} {str(dtype)[6:]} cuda forward_backward"
    torch.manual_seed(0)
    source = torch.randn(n, v, device="cuda", dtype=dtype)
    actions = torch.randint(0, v, (n,), device="cuda")
    ones, advantages = torch.ones(n, device="cuda"), torch.randn(n, device="cuda")
    extension.set_backend("fused")
    liger_loss = liger.LigerCrossEntropyLoss()
    destination = torch.empty_like(source) if implementation == "copy" else None

    def setup():
        x = source.clone().requires_grad_(implementation != "copy")
        synchronize("cuda")
        return (x,)

    def run(x):
        if implementation == "copy":
            destination.copy_(x)
            return
        if implementation == "rlgan":
            loss = ops.policy_gradient_loss(x, actions, advantages, entropy_coef=ENTROPY)
        elif implementation == "rlgan_inplace":
            loss = ops.policy_gradient_loss(x, actions, advantages, entropy_coef=ENTROPY, inplace=True)
        elif implementation == "rlgan_cross_entropy":
            loss = ops.policy_gradient_loss(x, actions, ones, inplace=True)
        else:
            loss = liger_loss(x, actions)
        loss.backward()

    measure_fn(benchmark, run, setup, "cuda", 50,
               {"n": n, "v": v, "dtype": str(dtype), "bytes": 2 * n * v * dtype.itemsize,
                "implementation": implementation, "mode": "forward_backward"})
    extension.set_backend(None)
