"""The reward-weighted losses: fused ops and their pure-PyTorch fallback, side by side.

Both ops follow the contract in ``docs/kernels.md``.  The fused versions are the ``rlgan::``
operators of the C++/CUDA extension (``csrc/``), made differentiable here with
``torch.library.register_autograd`` and traceable by ``torch.compile`` through their fake
implementations.  ``RLGAN_KERNEL=auto|fused|fallback`` (or the config's ``[kernel] backend``)
chooses between fused and fallback; see :mod:`rlgan_core.extension`.
"""

import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import is_fake

from . import extension

BASELINES = ("none", "mean", "whiten")
REDUCTIONS = ("mean", "sum")
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# --- reward_weighted_gan_loss ----------------------------------------------------------------


def reward_weighted_gan_loss(d_fake, rewards, reward_weights, *, baseline="mean", temperature=0.0, eps=1e-8):
    """Non-saturating generator loss with each sample weighted by the softmax of its advantage.

    ``r = rewards @ reward_weights``; ``A`` is ``r`` with ``baseline`` removed ("none", "mean", or
    "whiten": ``(r - mean) / (std + eps)``); ``c = N * softmax(temperature * A)`` (no gradient);
    ``loss = mean(c * softplus(-d_fake))``, a float32 scalar (float64 for float64 input).
    """
    _check_gan_inputs(d_fake, rewards, reward_weights, baseline, eps)
    fused = extension.use_fused(d_fake.device)
    if not (fused and d_fake.device.type == "cpu"):  # the CPU kernel checks while it reads them
        if not torch.isfinite(rewards).all():
            raise ValueError("rewards contain NaN or infinite values")
    if fused:
        return _call_fused(
            torch.ops.rlgan.reward_weighted_gan_loss.default,
            d_fake, rewards, reward_weights, baseline, float(temperature), float(eps),
        )
    return reward_weighted_gan_loss_fallback(
        d_fake, rewards, reward_weights, baseline=baseline, temperature=temperature, eps=eps
    )


def reward_weighted_gan_loss_fallback(d_fake, rewards, reward_weights, *, baseline="mean", temperature=0.0, eps=1e-8):
    """The same function as :func:`reward_weighted_gan_loss`, in plain PyTorch."""
    acc = _accumulation_dtype(d_fake.dtype)
    d = d_fake.to(acc)
    r = rewards.detach().to(acc) @ reward_weights.detach().to(acc)
    if baseline == "mean":
        r = r - r.mean()
    elif baseline == "whiten":
        r = (r - r.mean()) / (r.std(correction=0) + eps)
    weights = r.numel() * torch.softmax(temperature * r, dim=0)
    return (weights * F.softplus(-d)).mean()


def _check_gan_inputs(d_fake, rewards, reward_weights, baseline, eps):
    _check_float("d_fake", d_fake)
    _check_float("rewards", rewards)
    _check_float("reward_weights", reward_weights)
    if d_fake.dim() != 1 or d_fake.numel() == 0:
        raise ValueError(f"d_fake must have shape [N] with N >= 1, got {tuple(d_fake.shape)}")
    if rewards.dim() != 2 or rewards.shape[0] != d_fake.shape[0] or rewards.shape[1] == 0:
        raise ValueError(
            f"rewards must have shape [N, K] = [{d_fake.shape[0]}, K >= 1], got {tuple(rewards.shape)}"
        )
    if reward_weights.shape != (rewards.shape[1],):
        raise ValueError(f"reward_weights must have shape [{rewards.shape[1]}], got {tuple(reward_weights.shape)}")
    _check_same_device(d_fake=d_fake, rewards=rewards, reward_weights=reward_weights)
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")


# --- policy_gradient_loss --------------------------------------------------------------------


def policy_gradient_loss(
    logits, actions, advantages, *, entropy_coef=0.0, ignore_index=-100, reduction="mean", inplace=False
):
    """REINFORCE loss with an entropy bonus over rows of logits.

    ``loss = (1/M) * sum over valid rows of [-A_i * log p_i[a_i] - entropy_coef * H_i]``, where
    rows with ``actions == ignore_index`` are skipped and ``M`` counts the valid rows ("sum" drops
    ``1/M``; an empty valid set gives 0).  With ``inplace=True`` and the fused kernel, the
    gradient is written over ``logits`` during the forward pass (halving peak memory): the logits'
    values are lost, so only pass it when nothing else needs them.
    """
    _check_policy_inputs(logits, actions, advantages, ignore_index, reduction)
    if not extension.use_fused(logits.device):
        return policy_gradient_loss_fallback(
            logits, actions, advantages, entropy_coef=entropy_coef, ignore_index=ignore_index, reduction=reduction
        )
    args = (actions, advantages, float(entropy_coef), int(ignore_index), reduction)
    if inplace and logits.requires_grad:
        return _PolicyGradientLossInPlace.apply(logits, *args)
    return _call_fused(torch.ops.rlgan.policy_gradient_loss.default, logits, *args)


def policy_gradient_loss_fallback(logits, actions, advantages, *, entropy_coef=0.0, ignore_index=-100, reduction="mean"):
    """The same function as :func:`policy_gradient_loss`, in plain PyTorch."""
    acc = _accumulation_dtype(logits.dtype)
    valid = actions != ignore_index
    log_p = torch.log_softmax(logits.to(acc), dim=-1)
    log_p_action = log_p.gather(1, torch.where(valid, actions, 0).unsqueeze(1)).squeeze(1)
    per_row = -advantages.detach().to(acc) * log_p_action
    if entropy_coef != 0:
        p = log_p.exp()
        entropy = -(p * torch.where(p > 0, log_p, 0)).sum(dim=-1)
        per_row = per_row - entropy_coef * entropy
    loss = torch.where(valid, per_row, 0).sum()
    if reduction == "mean":
        loss = loss / valid.sum().clamp(min=1)
    return loss


def _call_fused(op, first, *rest):
    """Run a fused op, differentiable with respect to its first input.

    Traced by ``torch.compile`` (or called directly as ``torch.ops.rlgan.*``), the op's own
    autograd formula and fake implementation registered below apply.  In eager mode the same
    formula runs through :class:`_FusedLoss`, which costs a fraction of the per-call Python work
    of the generic ``register_autograd`` path (it matters for batch-sized losses).
    """
    if torch.compiler.is_compiling() or not (first.requires_grad and torch.is_grad_enabled()):
        loss, _ = op(first, *rest, first.requires_grad)
        return loss
    return _FusedLoss.apply(op, first, *rest)


class _FusedLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, op, first, *rest):
        with torch._C._AutoDispatchBelowAutograd():  # straight to the kernel, past the op's autograd wrapper
            loss, grad = op(first, *rest, True)
        ctx.save_for_backward(grad)
        ctx.set_materialize_grads(False)
        ctx.num_rest = len(rest)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        if grad_loss is None:
            return (None,) * (2 + ctx.num_rest)
        (grad,) = ctx.saved_tensors
        return (None, _scaled(grad, grad_loss)) + (None,) * ctx.num_rest


class _PolicyGradientLossInPlace(torch.autograd.Function):
    """Runs the in-place kernel: the forward leaves d loss / d logits in the logits' storage."""

    @staticmethod
    def forward(ctx, logits, actions, advantages, entropy_coef, ignore_index, reduction):
        loss = torch.ops.rlgan.policy_gradient_loss_(logits, actions, advantages, entropy_coef, ignore_index, reduction)
        ctx.save_for_backward(logits)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        (grad,) = ctx.saved_tensors
        return _scaled(grad.detach(), grad_loss, inplace=True), None, None, None, None, None


def _scaled(grad, grad_loss, inplace=False):
    """grad * grad_loss, skipping the pass over a large grad in the usual case grad_loss == 1.

    (Reading grad_loss is one small sync on CUDA, far cheaper than a pass over [N, V]; for small
    tensors the multiply is cheaper than the check.  While tracing there is no value to read.)
    """
    if grad.numel() >= 1 << 16 and not torch.compiler.is_compiling() and not is_fake(grad_loss):
        if bool(grad_loss == 1):
            return grad
    return grad.mul_(grad_loss.to(grad.dtype)) if inplace else grad * grad_loss.to(grad.dtype)


def _check_policy_inputs(logits, actions, advantages, ignore_index, reduction):
    _check_float("logits", logits)
    _check_float("advantages", advantages)
    if logits.dim() != 2 or logits.shape[1] == 0:
        raise ValueError(f"logits must have shape [N, V] with V >= 1, got {tuple(logits.shape)}")
    n, vocabulary = logits.shape
    if actions.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"actions must be int64 or int32, got {actions.dtype}")
    if actions.shape != (n,):
        raise ValueError(f"actions must have shape [{n}], got {tuple(actions.shape)}")
    if advantages.shape != (n,):
        raise ValueError(f"advantages must have shape [{n}], got {tuple(advantages.shape)}")
    _check_same_device(logits=logits, actions=actions, advantages=advantages)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    # One small reduction over the actions (a sync on CUDA): out-of-range actions must raise here,
    # not trip a device-side assert inside a kernel.
    bad = (actions != ignore_index) & ((actions < 0) | (actions >= vocabulary))
    if bad.any():
        first = actions[bad][0].item()
        raise ValueError(f"actions must lie in [0, {vocabulary}) or equal ignore_index={ignore_index}; got {first}")


# --- shared checks and the fused ops' autograd and fake implementations ---------------------


def _accumulation_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_float(name, tensor):
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(tensor).__name__}")
    if tensor.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {tensor.dtype}")


def _check_same_device(**tensors):
    devices = {name: tensor.device for name, tensor in tensors.items()}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise ValueError(f"all inputs must be on one device, got {listed}")


def _register_fused_ops():
    """Give the extension's ops their fake implementations and autograd formulas."""

    @torch.library.register_fake("rlgan::reward_weighted_gan_loss")
    def _(d_fake, rewards, reward_weights, baseline, temperature, eps, with_grad):
        loss = d_fake.new_empty((), dtype=_accumulation_dtype(d_fake.dtype))
        return loss, torch.empty_like(d_fake) if with_grad else d_fake.new_empty(0)

    @torch.library.register_fake("rlgan::policy_gradient_loss")
    def _(logits, actions, advantages, entropy_coef, ignore_index, reduction, with_grad):
        loss = logits.new_empty((), dtype=_accumulation_dtype(logits.dtype))
        return loss, torch.empty_like(logits) if with_grad else logits.new_empty(0)

    @torch.library.register_fake("rlgan::policy_gradient_loss_")
    def _(logits, actions, advantages, entropy_coef, ignore_index, reduction):
        return logits.new_empty((), dtype=_accumulation_dtype(logits.dtype))

    def save_gradient(ctx, inputs, output):
        ctx.save_for_backward(output[1])
        # The second output (the gradient itself) is never differentiated through: without this,
        # autograd would fill a zero [N, V] tensor as its incoming gradient on every backward.
        ctx.set_materialize_grads(False)

    def scale_gradient(ctx, grad_loss, _grad_of_gradient):
        if grad_loss is None:
            return (None,) * 7
        (grad,) = ctx.saved_tensors
        return (_scaled(grad, grad_loss),) + (None,) * 6

    for name in ("rlgan::reward_weighted_gan_loss", "rlgan::policy_gradient_loss"):
        torch.library.register_autograd(name, scale_gradient, setup_context=save_gradient)


extension.on_load(_register_fused_ops)
