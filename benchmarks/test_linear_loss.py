"""linear_policy_gradient_loss against the materialised path: hidden states [N, H] through a linear
layer [V, H] (with bias) into the policy loss with an entropy bonus, forward + backward.

Implementations:
- ``linear``: ``rlgan_core.ops.linear_policy_gradient_loss`` (chunks of rows; never all logits);
- ``materialised+fused``: ``addmm`` to the [N, V] logits, then the fused ``policy_gradient_loss``
  (the reference of the issue's time target: the matrix products plus our row op);
- ``materialised+fused inplace``: the same with the gradient written over the logits;
- ``materialised+eager``: the logits, then the eager fallback;
- ``materialised+compile``: the logits, then ``torch.compile`` of the fallback.

Peak memory is above what was in use before the call (inputs excluded; on the CPU the peak
resident set).  ``RLGAN_BENCH_LINEAR_SHAPES=4096x1024x32000`` picks shapes (``NxHxV``).
"""

import os

import pytest
import torch

from conftest import DEVICES
from rlgan_core import extension, ops

SHAPES = [tuple(int(x) for x in shape.split("x"))
          for shape in os.environ.get("RLGAN_BENCH_LINEAR_SHAPES", "4096x1024x32000").split(",")]
IMPLEMENTATIONS = ["linear", "materialised+fused", "materialised+fused inplace", "materialised+eager",
                   "materialised+compile"]
ENTROPY = 0.01
compiled_fallback = torch.compile(ops.policy_gradient_loss_fallback)


def materialised(loss_fn, **options):
    def run(hidden, weight, bias, actions, advantages):
        logits = torch.addmm(bias, hidden, weight.t())
        return loss_fn(logits, actions, advantages, entropy_coef=ENTROPY, **options)

    return run


def linear(hidden, weight, bias, actions, advantages):
    return ops.linear_policy_gradient_loss(hidden, weight, actions, advantages, bias=bias, entropy_coef=ENTROPY)


RUNS = {
    "linear": linear,
    "materialised+fused": materialised(ops.policy_gradient_loss),
    "materialised+fused inplace": materialised(ops.policy_gradient_loss, inplace=True),
    "materialised+eager": materialised(ops.policy_gradient_loss_fallback),
    "materialised+compile": materialised(compiled_fallback),
}


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("device", DEVICES)
def test_linear_policy_loss(benchmark, measure_fn, device, shape, implementation):
    n, h, v = shape
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    benchmark.group = f"linear policy loss with entropy N={n} H={h} V={v} {str(dtype).split('.')[1]} {device} forward_backward"
    extension.set_backend("fused")
    generator = torch.Generator().manual_seed(0)
    source = {
        "hidden": torch.randn(n, h, generator=generator).to(device, dtype),
        "weight": (torch.randn(v, h, generator=generator) / h**0.5).to(device, dtype),
        "bias": torch.zeros(v).to(device, dtype),
    }
    actions = torch.randint(0, v, (n,), generator=generator).to(device)
    advantages = torch.randn(n, generator=generator).to(device)
    run = RUNS[implementation]

    def setup():
        leaves = {name: tensor.detach().requires_grad_() for name, tensor in source.items()}
        return (leaves["hidden"], leaves["weight"], leaves["bias"], actions, advantages)

    def forward_backward(*args):
        run(*args).backward()

    rounds = 1 if implementation == "materialised+eager" else 5
    measure_fn(benchmark, forward_backward, setup, device, rounds,
               {"implementation": implementation, "n": n, "h": h, "v": v, "dtype": str(dtype)})
    extension.set_backend(None)
