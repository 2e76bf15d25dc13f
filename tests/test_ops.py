"""The fused ops against the fallback and against an independent float64 reference."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlgan_core import extension, ops

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
TOLERANCE = {torch.float64: 1e-10, torch.float32: 2e-5, torch.bfloat16: 2e-2, torch.float16: 4e-3}

pytestmark = pytest.mark.skipif(not extension.status().loaded, reason=f"no fused extension: {extension.status().reason}")


def fused(device):
    extension.set_backend("fused")
    return device


@pytest.fixture(autouse=True)
def reset_backend():
    yield
    extension.set_backend(None)


def reference_policy_loss(logits, actions, advantages, entropy_coef, ignore_index, reduction):
    """Written from the contract, in float64, independent of both implementations."""
    x = logits.double()
    loss = torch.zeros((), dtype=torch.float64, device=x.device)
    valid = 0
    for i in range(x.shape[0]):
        if actions[i] == ignore_index:
            continue
        valid += 1
        finite = x[i][torch.isfinite(x[i])]
        log_z = torch.logsumexp(finite, 0)
        log_p = x[i] - log_z
        p = log_p.exp()
        entropy = -(p[p > 0] * log_p[p > 0]).sum()
        loss = loss - advantages[i].double() * log_p[actions[i]] - entropy_coef * entropy
    return loss / max(valid, 1) if reduction == "mean" else loss


def relative_error(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp(min=1e-30)).item()


def policy_case(n, v, dtype, device, ignore_every=0, scale=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, v, generator=g) * scale).to(device=device, dtype=dtype)
    actions = torch.randint(0, v, (n,), generator=g)
    if ignore_every:
        actions[::ignore_every] = -100
    advantages = torch.randn(n, generator=g)
    return logits, actions.to(device), advantages.to(device)


def both_policy(logits, actions, advantages, **kwargs):
    results = []
    for fn in (ops.policy_gradient_loss, ops.policy_gradient_loss_fallback):
        x = logits.detach().clone().requires_grad_()
        extension.set_backend("fused")
        loss = fn(x, actions, advantages, **kwargs)
        (grad,) = torch.autograd.grad(loss, x)
        results.append((loss.detach(), grad))
    return results


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    v=st.integers(1, 700),
    dtype=st.sampled_from(DTYPES),
    entropy_coef=st.sampled_from([0.0, 0.01, 0.5]),
    reduction=st.sampled_from(["mean", "sum"]),
    ignore_every=st.sampled_from([0, 2, 3]),
    scale=st.sampled_from([0.1, 3.0, 30.0]),
    seed=st.integers(0, 2**16),
)
def test_policy_fused_equals_fallback(n, v, dtype, entropy_coef, reduction, ignore_every, scale, seed):
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        logits, actions, advantages = policy_case(n, v, dtype, device, ignore_every, scale, seed)
        kwargs = dict(entropy_coef=entropy_coef, reduction=reduction)
        (loss_f, grad_f), (loss_r, grad_r) = both_policy(logits, actions, advantages, **kwargs)
        assert loss_f.dtype == torch.float32 and grad_f.dtype == dtype
        expected = reference_policy_loss(logits, actions, advantages, entropy_coef, -100, reduction)
        tolerance = TOLERANCE[dtype]
        assert abs(loss_f.double() - expected).item() <= tolerance * (1 + abs(expected).item())
        assert abs(loss_r.double() - expected).item() <= tolerance * (1 + abs(expected).item())
        # Where every row is nearly certain (p[a] ~ 1 at large logits) the whole gradient is of the
        # size of the rounding of 1 - p[a] in the input dtype, so neither side is exact there:
        # compare within that rounding, scaled by the advantages.
        valid = actions != -100
        rows = int(valid.sum()) if reduction == "mean" else 1
        rounding = 4 * torch.finfo(dtype).eps * float(advantages[valid].norm()) / max(rows, 1)
        error = float((grad_f.double() - grad_r.double()).norm())
        assert error <= 5 * tolerance * float(grad_r.double().norm()) + rounding


def test_policy_gradient_matches_the_formula(device):
    """d loss / d x = (1/M) [A (p - onehot) + beta p (log p + H)], checked in float64."""
    logits, actions, advantages = policy_case(6, 50, torch.float64, device, ignore_every=4)
    beta = 0.3
    x = logits.clone().requires_grad_()
    extension.set_backend("fused")
    loss = ops.policy_gradient_loss(x, actions, advantages, entropy_coef=beta)
    (grad,) = torch.autograd.grad(loss, x)
    valid = actions != -100
    log_p = torch.log_softmax(logits, 1)
    p = log_p.exp()
    entropy = -(p * log_p).sum(1, keepdim=True)
    onehot = torch.nn.functional.one_hot(actions.clamp(min=0), 50).double()
    expected = (advantages[:, None].double() * (p - onehot) + beta * p * (log_p + entropy)) / valid.sum()
    expected[~valid] = 0
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("inplace", [False, True])
def test_policy_large_and_infinite_logits(device, inplace):
    logits = torch.tensor(
        [[1e4, -1e4, 0.0, 5.0], [-math.inf, 2.0, -math.inf, 1.0], [-1e4, -1e4, -1e4, -1e4], [3.0, -math.inf, 1e4, 0.0]],
        device=device,
    )
    actions = torch.tensor([1, 3, 2, 2], device=device)
    advantages = torch.tensor([1.0, -2.0, 0.5, 1.5], device=device)
    x = logits.clone().requires_grad_()
    extension.set_backend("fused")
    loss = ops.policy_gradient_loss(x * 1, actions, advantages, entropy_coef=0.1, inplace=inplace)
    (grad,) = torch.autograd.grad(loss, x)
    expected = reference_policy_loss(logits.cpu(), actions.cpu(), advantages.cpu(), 0.1, -100, "mean")
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert abs(loss.item() - expected.item()) < 1e-3 * (1 + abs(expected.item()))
    reference = logits.clone().requires_grad_()
    (grad_ref,) = torch.autograd.grad(
        ops.policy_gradient_loss_fallback(reference, actions, advantages, entropy_coef=0.1), reference
    )
    assert torch.isfinite(grad_ref).all()
    torch.testing.assert_close(grad, grad_ref, rtol=1e-4, atol=1e-6)


def test_policy_edge_shapes(device):
    extension.set_backend("fused")
    # V = 1: p = 1, log p = 0, H = 0: zero loss and gradient
    x = torch.randn(3, 1, device=device, requires_grad=True)
    loss = ops.policy_gradient_loss(x, torch.zeros(3, dtype=torch.long, device=device), torch.ones(3, device=device),
                                    entropy_coef=0.2)
    loss.backward()
    assert loss.item() == 0 and x.grad.abs().max().item() == 0
    # empty valid set: loss 0, gradient 0 (not NaN)
    x = torch.randn(4, 7, device=device, requires_grad=True)
    loss = ops.policy_gradient_loss(x, torch.full((4,), -100, device=device), torch.ones(4, device=device))
    loss.backward()
    assert loss.item() == 0 and x.grad.abs().max().item() == 0
    # N = 1
    logits, actions, advantages = policy_case(1, 9, torch.float32, device)
    (loss_f, grad_f), (loss_r, grad_r) = both_policy(logits, actions, advantages, entropy_coef=0.1)
    torch.testing.assert_close(loss_f, loss_r)
    torch.testing.assert_close(grad_f, grad_r)


@pytest.mark.parametrize("dtype", DTYPES)
def test_policy_inplace_writes_the_gradient_over_the_logits(device, dtype):
    extension.set_backend("fused")
    logits, actions, advantages = policy_case(33, 517, dtype, device, ignore_every=5)
    (loss_ref, grad_ref), _ = both_policy(logits, actions, advantages, entropy_coef=0.05)
    leaf = logits.clone().requires_grad_()
    storage = leaf * 1  # a non-leaf, as the output of a model's last layer would be
    loss = ops.policy_gradient_loss(storage, actions, advantages, entropy_coef=0.05, inplace=True)
    torch.testing.assert_close(storage.detach(), grad_ref)  # the forward left the gradient there
    loss.backward()
    torch.testing.assert_close(loss, loss_ref)
    torch.testing.assert_close(leaf.grad, grad_ref)


def test_gradcheck_float64(device):
    extension.set_backend("fused")
    logits, actions, advantages = policy_case(5, 11, torch.float64, device, ignore_every=3)
    x = logits.clone().requires_grad_()
    for fn in (ops.policy_gradient_loss, ops.policy_gradient_loss_fallback):
        assert torch.autograd.gradcheck(lambda t: fn(t, actions, advantages, entropy_coef=0.2), (x,))
    d = torch.randn(9, dtype=torch.float64, device=device, requires_grad=True)
    rewards = torch.randn(9, 3, dtype=torch.float64, device=device)
    weights = torch.rand(3, dtype=torch.float64, device=device)
    for fn in (ops.reward_weighted_gan_loss, ops.reward_weighted_gan_loss_fallback):
        assert torch.autograd.gradcheck(
            lambda t: fn(t, rewards, weights, baseline="whiten", temperature=0.8), (d,)
        )


@pytest.mark.parametrize("scale", [1.0, -2.5])
def test_eager_path_equals_the_registered_formula(device, scale):
    """The wrappers' eager autograd.Function and the op's own register_autograd formula."""
    extension.set_backend("fused")
    logits, actions, advantages = policy_case(12, 77, torch.float32, device, ignore_every=4)
    x, y = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    eager = ops.policy_gradient_loss(x, actions, advantages, entropy_coef=0.2)
    registered, _ = torch.ops.rlgan.policy_gradient_loss(y, actions, advantages, 0.2, -100, "mean", True)
    (eager * scale).backward()
    (registered * scale).backward()
    torch.testing.assert_close(eager, registered, rtol=0, atol=0)
    torch.testing.assert_close(x.grad, y.grad, rtol=0, atol=0)


def test_opcheck(device):
    logits, actions, advantages = policy_case(7, 64, torch.float32, device, ignore_every=3)
    torch.library.opcheck(
        torch.ops.rlgan.policy_gradient_loss.default,
        (logits.requires_grad_(), actions, advantages, 0.1, -100, "mean", True),
    )
    torch.library.opcheck(
        torch.ops.rlgan.policy_gradient_loss_.default,
        (logits.detach().clone(), actions, advantages, 0.1, -100, "sum"),
        test_utils=("test_schema", "test_faketensor"),
    )
    d = torch.randn(20, device=device, requires_grad=True)
    torch.library.opcheck(
        torch.ops.rlgan.reward_weighted_gan_loss.default,
        (d, torch.randn(20, 2, device=device), torch.rand(2, device=device), "whiten", 0.5, 1e-8, True),
    )


def reference_gan_loss(d, rewards, weights, baseline, temperature, eps):
    d, r = d.double(), rewards.double() @ weights.double()
    if baseline != "none":
        r = r - r.mean()
    if baseline == "whiten":
        r = r / (((r - r.mean()) ** 2).mean().sqrt() + eps)
    c = len(d) * torch.exp(temperature * r) / torch.exp(temperature * r).sum()
    return (c * torch.log1p(torch.exp(-d))).mean(), -(c / len(d)) * torch.sigmoid(-d)


@settings(max_examples=40, deadline=None)
@given(
    n=st.sampled_from([1, 2, 7, 64, 1000, 3000]),
    k=st.integers(1, 4),
    dtype=st.sampled_from(DTYPES),
    baseline=st.sampled_from(["none", "mean", "whiten"]),
    temperature=st.sampled_from([0.0, 0.5, 3.0]),
    seed=st.integers(0, 2**16),
)
def test_gan_fused_equals_fallback_and_reference(n, k, dtype, baseline, temperature, seed):
    g = torch.Generator().manual_seed(seed)
    d0, rewards, weights = torch.randn(n, generator=g) * 3, torch.randn(n, k, generator=g), torch.rand(k, generator=g)
    loss_ref, grad_ref = reference_gan_loss(d0.to(dtype), rewards, weights, baseline, temperature, 1e-8)
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        for fn in (ops.reward_weighted_gan_loss, ops.reward_weighted_gan_loss_fallback):
            d = d0.to(device=device, dtype=dtype).requires_grad_()
            extension.set_backend("fused")
            loss = fn(d, rewards.to(device), weights.to(device), baseline=baseline, temperature=temperature)
            (grad,) = torch.autograd.grad(loss, d)
            assert loss.dtype == torch.float32 and grad.dtype == dtype
            tolerance = TOLERANCE[dtype]
            assert abs(loss.item() - loss_ref.item()) <= 2 * tolerance * (1 + abs(loss_ref.item()))
            assert relative_error(grad.cpu(), grad_ref) <= 10 * tolerance


def test_temperature_zero_is_the_plain_non_saturating_loss(device):
    extension.set_backend("fused")
    d = torch.randn(50, device=device)
    loss = ops.reward_weighted_gan_loss(d, torch.randn(50, 2, device=device), torch.ones(2, device=device))
    torch.testing.assert_close(loss, torch.nn.functional.softplus(-d).mean())


def test_bad_inputs_raise_clear_errors(device):
    extension.set_backend("fused")
    x = torch.randn(4, 5, device=device)
    a = torch.tensor([0, 1, 2, 3], device=device)
    adv = torch.randn(4, device=device)
    with pytest.raises(ValueError, match="logits must have shape"):
        ops.policy_gradient_loss(x[0], a, adv)
    with pytest.raises(ValueError, match="actions must have shape"):
        ops.policy_gradient_loss(x, a[:3], adv)
    with pytest.raises(TypeError, match="logits must be float"):
        ops.policy_gradient_loss(x.long(), a, adv)
    with pytest.raises(ValueError, match=r"actions must lie in \[0, 5\)"):
        ops.policy_gradient_loss(x, torch.tensor([0, 5, 1, 1], device=device), adv)
        ops.check_pending_errors()  # on CUDA the actions are checked once the device got there
    with pytest.raises(ValueError, match="one device"):
        ops.policy_gradient_loss(x, a.cpu() if device.type == "cuda" else a.to("meta"), adv)
    with pytest.raises(ValueError, match="reduction"):
        ops.policy_gradient_loss(x, a, adv, reduction="max")
    d = torch.randn(4, device=device)
    with pytest.raises(ValueError, match="NaN"):
        ops.reward_weighted_gan_loss(d, torch.tensor([[0.0], [math.nan], [1.0], [2.0]], device=device),
                                     torch.ones(1, device=device))
    with pytest.raises(ValueError, match="rewards must have shape"):
        ops.reward_weighted_gan_loss(d, torch.randn(3, 1, device=device), torch.ones(1, device=device))
    with pytest.raises(ValueError, match="baseline"):
        ops.reward_weighted_gan_loss(d, torch.randn(4, 1, device=device), torch.ones(1, device=device), baseline="median")


def test_fused_ops_compile(device):
    extension.set_backend("fused")
    logits, actions, advantages = policy_case(8, 100, torch.float32, device)
    x = logits.clone().requires_grad_()
    compiled = torch.compile(lambda t: ops.policy_gradient_loss(t, actions, advantages, entropy_coef=0.1), fullgraph=False)
    loss = compiled(x)
    loss.backward()
    expected = reference_policy_loss(logits, actions, advantages, 0.1, -100, "mean")
    assert abs(loss.item() - expected.item()) < 1e-4


def test_fused_without_kernels_is_an_error(monkeypatch):
    from rlgan_core.errors import KernelError

    monkeypatch.setattr(extension, "status", lambda: extension.Status(False, "", (), "test: no compiler"))
    extension.set_backend("fused")
    with pytest.raises(KernelError, match="no compiler"):
        ops.policy_gradient_loss(torch.randn(2, 3), torch.tensor([0, 1]), torch.ones(2))
    extension.set_backend("auto")
    with pytest.warns(RuntimeWarning, match="fallback"):
        monkeypatch.setattr(extension, "_warned", False)
        ops.policy_gradient_loss(torch.randn(2, 3), torch.tensor([0, 1]), torch.ones(2))


# --- both op contracts against float64, written from docs/kernels.md alone -------------------


def reference_policy_gradient(logits, actions, advantages, entropy_coef, ignore_index, reduction):
    """d loss / d logits from the contract's formula, in float64:
    (1/M) [A (p - onehot) + beta p (log p + H)] on valid rows, 0 on ignored ones."""
    x = logits.double().cpu()
    grad = torch.zeros_like(x)
    valid = [i for i in range(x.shape[0]) if actions[i] != ignore_index]
    scale = 1.0 / max(len(valid), 1) if reduction == "mean" else 1.0
    for i in valid:
        log_p = x[i] - torch.logsumexp(x[i][torch.isfinite(x[i])], 0)
        p = log_p.exp()
        finite = p > 0
        entropy = -(p[finite] * log_p[finite]).sum()
        a = float(advantages[i])
        row = a * p
        row[int(actions[i])] -= a
        row[finite] += entropy_coef * p[finite] * (log_p[finite] + entropy)
        grad[i] = scale * row
    return grad


def reference_case(kind, n, v, dtype, device, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, v, generator=g, dtype=torch.float64) * 3
    actions = torch.randint(0, v, (n,), generator=g)
    if kind == "large":  # logits x 1e4
        x = x * 1e4
    elif kind == "minus_inf":  # a third of each row at -inf, and a row that is -inf but for its action
        x[torch.rand(n, v, generator=g) < 1 / 3] = -math.inf
        x[0] = -math.inf
        x[torch.arange(n), actions] = torch.randn(n, generator=g, dtype=torch.float64)
    elif kind == "ignored":  # every other row ignored, and those rows hold NaN, inf and -inf
        actions[::2] = -100
        x[::2, 0], x[::2, -1] = math.nan, math.inf
    return x.to(device=device, dtype=dtype), actions.to(device), (torch.randn(n, generator=g) * 2).to(device)


REFERENCE_CASES = [("plain", 8, 1000), ("large", 8, 1000), ("minus_inf", 8, 1000), ("ignored", 8, 1000),
                   ("plain", 3, 1), ("plain", 4, 32000), ("minus_inf", 3, 65536), ("ignored", 3, 131072),
                   ("plain", 2, 131072), ("minus_inf", 3, 100000)]


@pytest.mark.parametrize("inplace", [False, True], ids=["new_gradient", "inplace"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kind,n,v", REFERENCE_CASES, ids=[f"{k}-N{n}-V{v}" for k, n, v in REFERENCE_CASES])
def test_policy_fused_against_float64_reference(device, kind, n, v, dtype, reduction, inplace):
    logits, actions, advantages = reference_case(kind, n, v, dtype, device, seed=n * v)
    entropy_coef = 0.05
    expected_loss = reference_policy_loss(logits.cpu(), actions.cpu(), advantages.cpu(), entropy_coef, -100, reduction)
    expected_grad = reference_policy_gradient(logits, actions.cpu(), advantages.cpu(), entropy_coef, -100, reduction)
    extension.set_backend("fused")
    leaf = logits.detach().clone().requires_grad_()
    storage = leaf * 1
    loss = ops.policy_gradient_loss(storage, actions, advantages, entropy_coef=entropy_coef, reduction=reduction,
                                    inplace=inplace)
    loss.backward()
    grad = leaf.grad
    assert loss.dtype == torch.float32 and grad.dtype == dtype
    assert torch.isfinite(grad).all()
    tolerance = 2e-5 if dtype == torch.float32 else 1e-2
    assert abs(loss.item() - expected_loss.item()) <= tolerance * (1 + abs(expected_loss.item()))
    # relative to the gradient's norm, plus the rounding of each element to the input dtype
    rounding = torch.finfo(dtype).eps * float(expected_grad.norm())
    assert float((grad.double().cpu() - expected_grad).norm()) <= tolerance * float(expected_grad.norm()) + rounding


def reference_gan(d, rewards, weights, baseline, temperature, eps):
    """loss and d loss / d d_fake from the contract, in float64."""
    d, r = d.double().cpu(), rewards.double().cpu() @ weights.double().cpu()
    if baseline in ("mean", "whiten"):
        r = r - r.mean()
    if baseline == "whiten":
        r = r / (r.pow(2).mean().sqrt() + eps)
    c = len(d) * torch.softmax(temperature * r, 0)
    softplus = torch.where(d > 0, torch.log1p(torch.exp(-d)), -d + torch.log1p(torch.exp(d)))
    return (c * softplus).mean(), -(c / len(d)) * torch.sigmoid(-d)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("baseline", ["none", "mean", "whiten"])
@pytest.mark.parametrize("n,scale", [(1, 1.0), (256, 3.0), (5000, 1e4)])
def test_gan_fused_against_float64_reference(device, n, scale, baseline, dtype):
    g = torch.Generator().manual_seed(n)
    d = (torch.randn(n, generator=g) * scale).to(device=device, dtype=dtype)
    rewards, weights = torch.randn(n, 3, generator=g).to(device), torch.rand(3, generator=g).to(device)
    expected_loss, expected_grad = reference_gan(d, rewards, weights, baseline, 0.7, 1e-8)
    extension.set_backend("fused")
    x = d.clone().requires_grad_()
    loss = ops.reward_weighted_gan_loss(x, rewards, weights, baseline=baseline, temperature=0.7)
    loss.backward()
    tolerance = 2e-5 if dtype == torch.float32 else 1e-2
    assert abs(loss.item() - expected_loss.item()) <= tolerance * (1 + abs(expected_loss.item()))
    rounding = torch.finfo(dtype).eps * float(expected_grad.norm())
    assert float((x.grad.double().cpu() - expected_grad).norm()) <= tolerance * float(expected_grad.norm()) + rounding


# --- gradient memory, errors on the device, registration -------------------------------------


def test_cpu_gradient_memory_is_reused_only_when_nobody_holds_it():
    """Large CPU gradients come from blocks the extension keeps (no page faults on every call), and a
    gradient somebody still holds is never handed out again."""
    extension.set_backend("fused")
    logits, actions, advantages = policy_case(64, 32768, torch.float32, "cpu")  # an 8 MiB gradient

    def gradient(x):
        leaf = x.clone().requires_grad_()
        ops.policy_gradient_loss(leaf, actions, advantages, entropy_coef=0.1).backward()
        return leaf.grad

    kept = gradient(logits)
    kept_copy = kept.clone()
    other = gradient(logits * 2)
    assert other.data_ptr() != kept.data_ptr()
    torch.testing.assert_close(kept, kept_copy, rtol=0, atol=0)  # not overwritten by the second call
    address = other.data_ptr()
    del other
    again = gradient(logits * 3)
    assert again.data_ptr() == address  # the released block was taken back
    torch.testing.assert_close(kept, kept_copy, rtol=0, atol=0)


def test_bad_actions_raise_and_never_index_out_of_bounds(device):
    extension.set_backend("fused")
    x = torch.randn(4, 5, device=device, requires_grad=True)
    actions = torch.tensor([0, 5, 1, -3], device=device)
    if device.type == "cpu":  # checked at once
        with pytest.raises(ValueError, match=r"actions must lie in \[0, 5\).*got 5 at row 1"):
            ops.policy_gradient_loss(x, actions, torch.ones(4, device=device))
    else:  # checked once the device has computed the loss, without the host waiting for it
        loss = ops.policy_gradient_loss(x, actions, torch.ones(4, device=device))
        torch.cuda.synchronize()
        with pytest.raises(ValueError, match=r"earlier call.*actions must lie in \[0, 5\).*got 5 at row 1"):
            loss.backward()  # the backward pass finds it
        ops.policy_gradient_loss(x.detach(), actions, torch.ones(4, device=device))
        torch.cuda.synchronize()
        with pytest.raises(ValueError, match="got 5 at row 1"):  # so does the next call
            ops.policy_gradient_loss(x.detach(), torch.zeros_like(actions), torch.ones(4, device=device))
        ops.policy_gradient_loss(x.detach(), actions, torch.ones(4, device=device))
        with pytest.raises(ValueError, match="got 5 at row 1"):  # and check_pending_errors, which waits
            ops.check_pending_errors()
    # the raw op never reads out of bounds and never throws: the bad rows come out NaN
    loss, grad = torch.ops.rlgan.policy_gradient_loss(x.detach(), actions, torch.ones(4, device=device), 0.0,
                                                      -100, "sum", True)
    assert torch.isnan(loss) and torch.isnan(grad[1]).all() and torch.isnan(grad[3]).all()
    assert torch.isfinite(grad[0]).all() and torch.isfinite(grad[2]).all()


@pytest.mark.parametrize("inplace", [False, True])
def test_incoming_gradient_scales_and_a_second_backward_rescales(device, inplace):
    extension.set_backend("fused")
    logits, actions, advantages = policy_case(16, 300, torch.float32, device)
    (_, grad_ref), _ = both_policy(logits, actions, advantages, entropy_coef=0.1)
    leaf = logits.clone().requires_grad_()
    loss = ops.policy_gradient_loss(leaf * 1, actions, advantages, entropy_coef=0.1, inplace=inplace)
    (grad,) = torch.autograd.grad(loss * 3, leaf, retain_graph=True)
    torch.testing.assert_close(grad, 3 * grad_ref)
    (grad,) = torch.autograd.grad(loss * -0.5, leaf)
    torch.testing.assert_close(grad, -0.5 * grad_ref)


def test_inplace_on_logits_that_are_not_contiguous_leaves_them_alone(device):
    extension.set_backend("fused")
    logits, actions, advantages = policy_case(40, 9, torch.float32, device)
    (_, grad_ref), _ = both_policy(logits, actions, advantages, entropy_coef=0.1)
    leaf = logits.t().contiguous().requires_grad_()  # [V, N] storage; its transpose is [N, V], strided
    strided = leaf.t() * 1
    strided = strided.t().contiguous().t()
    before = strided.detach().clone()
    ops.policy_gradient_loss(strided, actions, advantages, entropy_coef=0.1, inplace=True).backward()
    torch.testing.assert_close(leaf.grad.t(), grad_ref)
    torch.testing.assert_close(strided.detach(), before)


@pytest.mark.parametrize("first", ["ops", "extension"])
def test_ops_are_registered_whichever_module_loads_first(first):
    import subprocess
    import sys

    load = ("import rlgan_core.ops; from rlgan_core import extension; extension.status()" if first == "ops"
            else "from rlgan_core import extension; extension.status()")
    script = f"""{load}
import torch
x = torch.randn(6, 40, requires_grad=True)
args = (torch.randint(0, 40, (6,)), torch.randn(6), 0.1, -100, "mean", True)
torch.library.opcheck(torch.ops.rlgan.policy_gradient_loss.default, (x, *args))
loss = torch.compile(lambda t: torch.ops.rlgan.policy_gradient_loss(t, *args)[0], fullgraph=True)(x)
loss.backward()
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def test_build_info_names_the_build():
    info = extension.status().build
    assert set(info) >= {"torch", "cpu", "openmp", "cuda"}
    assert info["torch"] == ".".join(torch.__version__.split(".")[:2])
    assert info["openmp"] == "yes"  # rows spread over cores: both builds pass -fopenmp


PREBUILT = extension.status().origin == "prebuilt"


@pytest.mark.skipif(not PREBUILT, reason="the per-instruction-set CPU modules come with pip install")
@pytest.mark.parametrize("capability", ["avx2", "default"])
def test_every_cpu_build_meets_the_float64_reference(capability):
    """pip install builds the CPU kernels per instruction set; ``ATEN_CPU_CAPABILITY`` makes the
    extension load a lower one than this CPU's best, which must compute the same losses."""
    import os
    import subprocess
    import sys

    script = """
import torch
from rlgan_core import extension, ops
assert extension.status().build["cpu"] == "CAPABILITY", extension.status()
extension.set_backend("fused")
torch.manual_seed(0)
for n, v in ((3, 5), (64, 1000), (17, 33)):
    logits = torch.randn(n, v, dtype=torch.float64) * 4
    actions, advantages = torch.randint(0, v, (n,)), torch.randn(n, dtype=torch.float64)
    x = logits.float().requires_grad_()
    ops.policy_gradient_loss(x, actions, advantages.float(), entropy_coef=0.1).backward()
    reference = logits.clone().requires_grad_()
    extension.set_backend("fallback")
    expected = ops.policy_gradient_loss(reference, actions, advantages, entropy_coef=0.1)
    expected.backward()
    extension.set_backend("fused")
    torch.testing.assert_close(x.grad.double(), reference.grad, atol=2e-6, rtol=2e-5)
    d_fake, rewards = torch.randn(n, dtype=torch.float64), torch.randn(n, 2, dtype=torch.float64)
    weights = torch.tensor([1.0, 0.5], dtype=torch.float64)
    d = d_fake.float().requires_grad_()
    loss = ops.reward_weighted_gan_loss(d, rewards.float(), weights.float(), temperature=0.5)
    loss.backward()
    extension.set_backend("fallback")
    d64 = d_fake.clone().requires_grad_()
    loss64 = ops.reward_weighted_gan_loss(d64, rewards, weights, temperature=0.5)
    loss64.backward()
    extension.set_backend("fused")
    torch.testing.assert_close(loss.double(), loss64, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(d.grad.double(), d64.grad, atol=1e-6, rtol=1e-5)
print("ok")
""".replace("CAPABILITY", capability)
    env = dict(os.environ, ATEN_CPU_CAPABILITY=capability)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


@pytest.mark.skipif(not PREBUILT, reason="pip install records the PyTorch it built against")
def test_modules_built_for_another_torch_are_refused_before_they_load():
    import subprocess
    import sys

    script = """
import sys, torch
torch.__version__ = "2.99.0"                  # as if another PyTorch had been installed since
sys.modules["torch.utils.cpp_extension"] = None  # and nothing could be built on first use
from rlgan_core.cli import main
main(["doctor"])
print("loaded:", "rlgan_core._C" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    built = extension.status().build["torch"]
    assert f"it was built against torch {built} but torch 2.99 is running" in result.stdout, result.stdout
    assert "pip install --no-build-isolation" in result.stdout and "cpu: fallback" in result.stdout
    assert "loaded: False" in result.stdout
