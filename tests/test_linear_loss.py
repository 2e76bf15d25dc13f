"""linear_policy_gradient_loss: the policy loss of a linear layer's logits, never holding them all,
against an independent float64 reference, fused and fallback, in chunks of rows."""

import pytest
import torch

from rlgan_core import extension, ops

TOLERANCE = {torch.float64: 1e-10, torch.float32: 2e-5, torch.bfloat16: 3e-2}
BACKENDS = ["fused", "fallback"] if extension.status().loaded else ["fallback"]


@pytest.fixture(autouse=True)
def reset_backend():
    yield
    extension.set_backend(None)


def reference(hidden, weight, bias, actions, advantages, entropy_coef, ignore_index, reduction):
    """Written from the contract in float64: materialised logits, then the policy loss row by row."""
    logits = hidden.double() @ weight.double().t() + (bias.double() if bias is not None else 0)
    total, valid = torch.zeros((), dtype=torch.float64), 0
    for i in range(len(logits)):
        if actions[i] == ignore_index:
            continue
        valid += 1
        log_p = torch.log_softmax(logits[i], 0)
        p = log_p.exp()
        total = total - advantages[i].double() * log_p[actions[i]] + entropy_coef * (p * log_p).sum()
    return total / max(valid, 1) if reduction == "mean" else total


def case(n, h, v, dtype, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g).to(dtype)
    weight = (torch.randn(v, h, generator=g) / h**0.5).to(dtype)
    b = (torch.randn(v, generator=g) * 0.1).to(dtype) if bias else None
    actions = torch.randint(0, v, (n,), generator=g)
    actions[::5] = -100
    return hidden, weight, b, actions, torch.randn(n, generator=g)


def gradients(fn, hidden, weight, bias, *args, **kwargs):
    leaves = [t.detach().clone().requires_grad_() if t is not None else None for t in (hidden, weight, bias)]
    loss = fn(leaves[0], leaves[1], *args, bias=leaves[2], **kwargs) if fn is ops.linear_policy_gradient_loss \
        else fn(leaves[0], leaves[1], leaves[2], *args, **kwargs)
    loss.backward()
    return loss.detach(), [t.grad if t is not None else None for t in leaves]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_matches_the_float64_reference_in_chunks(monkeypatch, backend, dtype, bias, reduction):
    extension.set_backend(backend)
    hidden, weight, b, actions, advantages = case(53, 24, 300, dtype, bias)
    monkeypatch.setattr(ops, "LINEAR_CHUNK_BYTES", 16 * 300 * hidden.element_size())  # 16 rows at a time: 4 chunks
    kwargs = dict(entropy_coef=0.05, ignore_index=-100, reduction=reduction)
    loss, grads = gradients(ops.linear_policy_gradient_loss, hidden, weight, b, actions, advantages, **kwargs)
    expected, expected_grads = gradients(reference, hidden.double(), weight.double(), b.double() if bias else None,
                                         actions, advantages, **kwargs)
    tolerance = TOLERANCE[dtype]
    assert abs(loss.double() - expected) <= tolerance * max(1.0, abs(expected))
    for grad, want in zip(grads, expected_grads):
        if want is None:
            assert grad is None
            continue
        assert grad.dtype == dtype
        assert ((grad.double() - want).norm() / want.norm()) <= tolerance * 10


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck(monkeypatch, backend):
    extension.set_backend(backend)
    hidden, weight, b, actions, advantages = case(9, 5, 7, torch.float64)
    monkeypatch.setattr(ops, "LINEAR_CHUNK_BYTES", 4 * 7 * 8)  # chunks of 4 rows
    leaves = [t.requires_grad_() for t in (hidden, weight, b)]
    assert torch.autograd.gradcheck(
        lambda h, w, bb: ops.linear_policy_gradient_loss(h, w, actions, advantages, bias=bb, entropy_coef=0.1), leaves)


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck_and_compile(backend):
    extension.set_backend(backend)
    hidden, weight, b, actions, advantages = case(12, 8, 30, torch.float32)
    for t in (hidden, weight, b):
        t.requires_grad_()
    torch.library.opcheck(torch.ops.rlgan.linear_policy_gradient_loss.default,
                          (hidden, weight, b, actions, advantages, 0.1, -100, "mean", True))
    compiled = torch.compile(lambda h, w, bb: ops.linear_policy_gradient_loss(h, w, actions, advantages, bias=bb,
                                                                             entropy_coef=0.1), fullgraph=True)
    loss = compiled(hidden, weight, b)
    loss.backward()
    expected = reference(hidden.detach(), weight.detach(), b.detach(), actions, advantages, 0.1, -100, "mean")
    assert abs(float(loss) - float(expected)) < 1e-5


def test_without_gradients_it_computes_only_the_loss():
    hidden, weight, b, actions, advantages = case(10, 6, 20, torch.float32)
    with torch.no_grad():
        loss = ops.linear_policy_gradient_loss(hidden, weight, actions, advantages, bias=b)
    assert not loss.requires_grad
    assert abs(float(loss) - float(reference(hidden, weight, b, actions, advantages, 0.0, -100, "mean"))) < 1e-5


def test_bad_inputs_are_named():
    hidden, weight, b, actions, advantages = case(10, 6, 20, torch.float32)
    with pytest.raises(ValueError, match=r"hidden must be \[N, H\] and weight \[V, H\]"):
        ops.linear_policy_gradient_loss(hidden, weight[:, :5], actions, advantages)
    with pytest.raises(ValueError, match=r"bias must have shape \[20\]"):
        ops.linear_policy_gradient_loss(hidden, weight, actions, advantages, bias=b[:3])
    with pytest.raises(TypeError, match="must share a dtype"):
        ops.linear_policy_gradient_loss(hidden, weight.double(), actions, advantages)
    bad = actions.clone()
    bad[1] = 20
    with pytest.raises(ValueError, match=r"actions must lie in \[0, 20\)"):
        ops.linear_policy_gradient_loss(hidden, weight, bad, advantages)
