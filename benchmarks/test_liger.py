"""The fused policy loss against Liger-Kernel's fused cross entropy on a GPU (forward+backward).

Liger's kernel computes less: cross entropy is the policy loss with every advantage 1 and no
entropy bonus.  Both write the gradient into the logits during the forward pass.  Rows: our op
on that same function (in place), our op with the entropy bonus (in place), Liger, and a copy of
the logits (the roofline).  Runs only where CUDA and ``liger_kernel`` are installed.
"""

import pytest
import torch

from rlgan_core import extension, ops

from conftest import synchronize

liger = pytest.importorskip("liger_kernel.transformers")
if not torch.cuda.is_available():
    pytest.skip("Liger-Kernel runs on CUDA", allow_module_level=True)

SHAPES = [(4096, 32768), (16384, 32000), (16384, 128256)]
IMPLEMENTATIONS = ["copy", "rlgan_cross_entropy", "rlgan_policy_entropy", "liger_cross_entropy"]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("n,v", SHAPES, ids=[f"N{n}-V{v}" for n, v in SHAPES])
def test_against_liger(benchmark, measure_fn, n, v, implementation):
    benchmark.group = f"fused losses vs Liger-Kernel N={n} V={v} float32 cuda forward_backward"
    torch.manual_seed(0)
    source = torch.randn(n, v, device="cuda")
    actions = torch.randint(0, v, (n,), device="cuda")
    ones, advantages = torch.ones(n, device="cuda"), torch.randn(n, device="cuda")
    extension.set_backend("fused")
    liger_loss = liger.LigerCrossEntropyLoss()
    destination = torch.empty_like(source)

    def setup():
        x = source.clone().requires_grad_(implementation != "copy")
        synchronize("cuda")
        return (x,)

    def run(x):
        if implementation == "copy":
            destination.copy_(x)
            return
        if implementation == "rlgan_cross_entropy":
            loss = ops.policy_gradient_loss(x, actions, ones, inplace=True)
        elif implementation == "rlgan_policy_entropy":
            loss = ops.policy_gradient_loss(x, actions, advantages, entropy_coef=0.01, inplace=True)
        else:
            loss = liger_loss(x, actions)
        loss.backward()

    measure_fn(benchmark, run, setup, "cuda", 50,
               {"n": n, "v": v, "dtype": "torch.float32", "bytes": 2 * n * v * 4,
                "implementation": implementation, "mode": "forward_backward"})
    extension.set_backend(None)
