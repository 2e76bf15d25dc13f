"""reward_weighted_gan_loss: fused, eager fallback, torch.compile(fallback), forward+backward; beside
the floor any loss pays at these sizes: the cheapest one-op graph (``d_fake.sum()``) and its
``backward()``."""

import pytest
import torch

from rlgan_core import extension, ops

from conftest import DEVICES

SHAPES = [(64, 1), (256, 4), (1024, 4), (65536, 1), (65536, 4)]
compiled_fallback = torch.compile(ops.reward_weighted_gan_loss_fallback, dynamic=False)


@pytest.mark.parametrize("implementation", ["backward_floor", "fused", "fallback", "compiled"])
@pytest.mark.parametrize("n,k", SHAPES, ids=[f"N{n}-K{k}" for n, k in SHAPES])
@pytest.mark.parametrize("device", DEVICES)
def test_gan_loss(benchmark, measure_fn, device, n, k, implementation):
    benchmark.group = f"reward_weighted_gan_loss N={n} K={k} float32 {device} forward_backward"
    torch.manual_seed(0)
    d = torch.randn(n, device=device, requires_grad=True)
    rewards, weights = torch.randn(n, k, device=device), torch.rand(k, device=device)
    extension.set_backend("fallback" if implementation != "fused" else "fused")
    fn = {"fused": ops.reward_weighted_gan_loss, "fallback": ops.reward_weighted_gan_loss_fallback,
          "compiled": compiled_fallback, "backward_floor": lambda d, *args, **kwargs: d.sum()}[implementation]

    def run():
        loss = fn(d, rewards, weights, baseline="whiten", temperature=0.5)
        loss.backward()

    measure_fn(benchmark, run, lambda: (), device, 200,
               {"n": n, "k": k, "implementation": implementation, "mode": "forward_backward"})
    extension.set_backend(None)
