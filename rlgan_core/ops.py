"""The reward-weighted losses: fused ops and their pure-PyTorch fallback, side by side.

Both ops follow the contract in ``docs/kernels.md``.  The fused versions are the ``rlgan::``
operators of the C++/CUDA extension (``csrc/``), made differentiable here with
``torch.library.register_autograd`` and traceable by ``torch.compile`` through their fake
implementations.  ``RLGAN_KERNEL=auto|fused|fallback`` (or the config's ``[kernel] backend``)
chooses between fused and fallback; see :mod:`rlgan_core.extension`.  No private PyTorch API is used:
every call goes through the dispatcher like any other op.
"""

import math
from typing import Optional

import torch
import torch.nn.functional as F

from . import extension

BASELINES = ("none", "mean", "whiten")
REDUCTIONS = ("mean", "sum")
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# --- advantages --------------------------------------------------------------------------------


def advantages(scores, baseline="whiten", eps=1e-8, *, global_batch=False):
    """``scores`` ``[N, ...]`` less a baseline taken over the batch (dimension 0), in their dtype.

    ``baseline``: "none" (the scores), "mean" (less the batch mean), "whiten" (less the mean, over
    the population standard deviation plus ``eps``); a score of shape ``[N, T]`` gets one
    baseline per column (per step of a sample).  With ``global_batch``, mean and deviation are
    those of every rank's scores together (``torch.distributed``), so N processes compute what one
    process with the whole batch would.  The fused losses compute the same inside their kernels.
    """
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    scores = scores.detach()
    if baseline == "none":
        return scores
    if global_batch:
        count = torch.full(scores.shape[1:], float(len(scores)), dtype=scores.dtype, device=scores.device)
        sums = torch.stack([scores.sum(0), scores.square().sum(0), count])
        if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
            torch.distributed.all_reduce(sums)
        mean = sums[0] / sums[2]
        std = (sums[1] / sums[2] - mean.square()).clamp(min=0).sqrt()
    else:
        mean, std = scores.mean(0), scores.std(0, correction=0)
    centred = scores - mean
    return centred / (std + eps) if baseline == "whiten" else centred


# --- reward_weighted_gan_loss ----------------------------------------------------------------


def reward_weighted_gan_loss(d_fake, rewards, reward_weights, *, baseline="mean", temperature=0.0, eps=1e-8):
    """Non-saturating generator loss with each sample weighted by the softmax of its advantage.

    ``r = rewards @ reward_weights``; ``A`` is ``r`` with ``baseline`` removed ("none", "mean", or
    "whiten": ``(r - mean) / (std + eps)``); ``c = N * softmax(temperature * A)`` (no gradient);
    ``loss = mean(c * softplus(-d_fake))``, a float32 scalar (float64 for float64 input).
    """
    _check_gan_inputs(d_fake, rewards, reward_weights, baseline, eps)
    if not torch.isfinite(rewards).all():  # checked here: the kernels must never have to raise
        raise ValueError("rewards contain NaN or infinite values")
    fused = extension.use_fused(d_fake.device)
    if fused:
        args = (rewards, reward_weights, baseline, float(temperature), float(eps))
        return _call_fused("reward_weighted_gan_loss", d_fake, args)
    return reward_weighted_gan_loss_fallback(
        d_fake, rewards, reward_weights, baseline=baseline, temperature=temperature, eps=eps
    )


def reward_weighted_gan_loss_fallback(d_fake, rewards, reward_weights, *, baseline="mean", temperature=0.0, eps=1e-8):
    """The same function as :func:`reward_weighted_gan_loss`, in plain PyTorch."""
    acc = _accumulation_dtype(d_fake.dtype)
    d = d_fake.to(acc)
    r = advantages(rewards.detach().to(acc) @ reward_weights.detach().to(acc), baseline, eps)
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
    values are lost, so only pass it when nothing else needs them (logits that are not contiguous
    are left alone: their gradient goes to a new tensor).

    An action outside ``[0, V)`` that is not ``ignore_index`` raises ``ValueError``: at once on
    the CPU; on CUDA, where checking before the kernel would make the host wait for the device, at
    the next fused call or backward pass after the device computed this loss (which is NaN), or at
    :func:`check_pending_errors`; see ``docs/kernels.md``.
    """
    _check_policy_inputs(logits, actions, advantages, reduction)
    vocabulary = logits.shape[1]
    fused = extension.use_fused(logits.device)
    # Bad input must raise here, never inside a kernel: an exception thrown by the extension's C++
    # crashes some PyTorch builds (2.11) instead of reaching Python.  The actions are checked now,
    # except for the fused CUDA kernels: there the check would make the host wait for the device,
    # so rows with a bad action come out NaN and a NaN loss is explained by checking the actions
    # once the device has computed it.
    diagnose = None
    if fused and logits.device.type != "cpu":
        diagnose = lambda: _check_actions(actions, vocabulary, ignore_index, "an earlier call on the GPU: ")  # noqa: E731
    else:
        _check_actions(actions, vocabulary, ignore_index)
    if not fused:
        return policy_gradient_loss_fallback(
            logits, actions, advantages, entropy_coef=entropy_coef, ignore_index=ignore_index, reduction=reduction
        )
    args = (actions, advantages, float(entropy_coef), int(ignore_index), reduction)
    inplace = inplace and logits.is_contiguous()  # the gradient of other logits goes to a new tensor
    return _call_fused("policy_gradient_loss", logits, args, diagnose, inplace=inplace)


def policy_gradient_loss_fallback(logits, actions, advantages, *, entropy_coef=0.0, ignore_index=-100, reduction="mean"):
    """The same function as :func:`policy_gradient_loss`, in plain PyTorch."""
    acc = _accumulation_dtype(logits.dtype)
    valid = actions != ignore_index
    log_p = torch.log_softmax(logits.to(acc), dim=-1)
    log_p_action = log_p.gather(1, torch.where(valid, actions, 0).long().unsqueeze(1)).squeeze(1)
    per_row = -advantages.detach().to(acc) * log_p_action
    if entropy_coef != 0:
        p = log_p.exp()
        entropy = -(p * torch.where(p > 0, log_p, 0)).sum(dim=-1)
        per_row = per_row - entropy_coef * entropy
    loss = torch.where(valid, per_row, 0).sum()
    if reduction == "mean":
        loss = loss / valid.sum().clamp(min=1)
    return loss


def _check_policy_inputs(logits, actions, advantages, reduction):
    """Types, shapes and devices: attribute reads only, no work on the device."""
    _check_float("logits", logits)
    _check_float("advantages", advantages)
    if logits.dim() != 2 or logits.shape[1] == 0:
        raise ValueError(f"logits must have shape [N, V] with V >= 1, got {tuple(logits.shape)}")
    n = logits.shape[0]
    if not isinstance(actions, torch.Tensor) or actions.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"actions must be an int64 or int32 tensor, got {getattr(actions, 'dtype', type(actions))}")
    if actions.shape != (n,):
        raise ValueError(f"actions must have shape [{n}], got {tuple(actions.shape)}")
    if advantages.shape != (n,):
        raise ValueError(f"advantages must have shape [{n}], got {tuple(advantages.shape)}")
    _check_same_device(logits=logits, actions=actions, advantages=advantages)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _check_actions(actions, vocabulary, ignore_index, where=""):
    """Raise ValueError naming the first action outside [0, vocabulary) that is not ignore_index."""
    bad = (actions != ignore_index) & ((actions < 0) | (actions >= vocabulary))
    if bad.any():
        row = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{where}actions must lie in [0, {vocabulary}) or equal ignore_index={ignore_index}; "
            f"got {int(actions[row])} at row {row}"
        )


# --- linear_policy_gradient_loss -------------------------------------------------------------

LINEAR_CHUNK_BYTES = 64 * 2**20  # the logits of one chunk of rows: what the op holds at a time (chosen by measurement, BENCHMARKS.md)


def linear_policy_gradient_loss(
    hidden, weight, actions, advantages, *, bias=None, entropy_coef=0.0, ignore_index=-100, reduction="mean"
):
    """:func:`policy_gradient_loss` of ``hidden @ weight.T + bias`` without the ``[N, V]`` logits.

    ``hidden`` ``[N, H]``, ``weight`` ``[V, H]``, ``bias`` ``[V]`` or ``None``.  The rows go through
    in chunks whose logits take about ``LINEAR_CHUNK_BYTES``: each chunk's logits are computed,
    turned into their gradient by the row loss (fused, in place; or the fallback's formula), and
    folded into the gradients of ``hidden``, ``weight`` and ``bias`` at once, so that the op never
    holds more than one chunk of logits.  Gradients are computed in the forward pass (when any
    input requires one) and scaled by the incoming gradient in the backward pass.
    """
    _check_linear_inputs(hidden, weight, bias, actions, advantages, reduction)
    # as policy_gradient_loss: checked here unless that would wait for the GPU (or break a compiled graph)
    if not torch.compiler.is_compiling() and (hidden.device.type == "cpu" or not extension.use_fused(hidden.device)):
        _check_actions(actions, weight.shape[0], ignore_index)
    with_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (hidden, weight, bias))
    loss, *_ = torch.ops.rlgan.linear_policy_gradient_loss(
        hidden, weight, bias, actions, advantages, float(entropy_coef), int(ignore_index), reduction, with_grad
    )
    if hidden.is_cuda and not torch.compiler.is_compiling() and extension.use_fused(hidden.device):
        check_pending_errors(wait=False)  # bad actions come out NaN there: explained once the device got there
        _watch(loss, lambda: _check_actions(actions, weight.shape[0], ignore_index, "an earlier call on the GPU: "))
    return loss


@torch.library.custom_op("rlgan::linear_policy_gradient_loss", mutates_args=())
def _linear_policy_gradient_loss(
    hidden: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], actions: torch.Tensor,
    advantages: torch.Tensor, entropy_coef: float, ignore_index: int, reduction: str, with_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, d loss / d hidden, d loss / d weight, d loss / d bias); the gradients are empty
    without ``with_grad`` (and the bias's without a bias)."""
    n, vocabulary = hidden.shape[0], weight.shape[0]
    acc = _accumulation_dtype(hidden.dtype)
    fused = extension.use_fused(hidden.device)
    rows = max(1, LINEAR_CHUNK_BYTES // (vocabulary * hidden.element_size()))
    loss = torch.zeros((), dtype=acc, device=hidden.device)
    if with_grad:
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros(weight.shape, dtype=acc, device=weight.device)
        grad_bias = torch.zeros(vocabulary, dtype=acc, device=weight.device) if bias is not None else None
    for start in range(0, n, rows):
        h, a, adv = hidden[start:start + rows], actions[start:start + rows], advantages[start:start + rows]
        logits = torch.addmm(bias, h, weight.t()) if bias is not None else h @ weight.t()
        if fused:  # the row kernel leaves the gradient of the chunk's sum in its logits
            args = (a, adv, entropy_coef, ignore_index, "sum")
            loss += torch.ops.rlgan.policy_gradient_loss_.default(logits, *args) if with_grad else \
                torch.ops.rlgan.policy_gradient_loss_eager.default(logits, *args, False)[0]
            grad = logits
        else:
            chunk_loss, grad = _policy_rows_fallback(logits, a, adv, entropy_coef, ignore_index, with_grad)
            loss += chunk_loss
        if with_grad:
            torch.mm(grad, weight, out=grad_hidden[start:start + rows])
            grad_weight.addmm_(grad.t().to(acc), h.to(acc))
            if bias is not None:
                grad_bias += grad.sum(0, dtype=acc)
    scale = 1 / (actions != ignore_index).sum().clamp(min=1).to(acc) if reduction == "mean" else None
    if scale is not None:
        loss = loss * scale
    if not with_grad:
        return loss, hidden.new_empty(0), hidden.new_empty(0), hidden.new_empty(0)
    if scale is not None:
        grad_hidden.mul_(scale.to(grad_hidden.dtype))
        grad_weight.mul_(scale)
        if bias is not None:
            grad_bias.mul_(scale)
    grad_bias = grad_bias.to(bias.dtype) if bias is not None else hidden.new_empty(0)
    return loss, grad_hidden, grad_weight.to(weight.dtype), grad_bias


def _policy_rows_fallback(logits, actions, advantages, entropy_coef, ignore_index, with_grad):
    """The summed policy loss of some rows and (``with_grad``) its gradient with respect to the
    logits, in plain PyTorch: ``A (p - onehot(a)) + entropy_coef * p (log p + H)`` per valid row."""
    acc = _accumulation_dtype(logits.dtype)
    loss = policy_gradient_loss_fallback(logits, actions, advantages, entropy_coef=entropy_coef,
                                         ignore_index=ignore_index, reduction="sum")
    if not with_grad:
        return loss, None
    valid = actions != ignore_index
    log_p = torch.log_softmax(logits.to(acc), dim=-1)
    p = log_p.exp()
    a = advantages.detach().to(acc).unsqueeze(1)
    grad = a * p
    grad.scatter_add_(1, torch.where(valid, actions, 0).long().unsqueeze(1), -a)
    if entropy_coef != 0:
        log_p = torch.where(p > 0, log_p, 0)
        entropy = -(p * log_p).sum(dim=-1, keepdim=True)
        grad += entropy_coef * p * (log_p + entropy)
    grad = torch.where(valid.unsqueeze(1), grad, 0)
    return loss, grad.to(logits.dtype)


@_linear_policy_gradient_loss.register_fake
def _(hidden, weight, bias, actions, advantages, entropy_coef, ignore_index, reduction, with_grad):
    loss = hidden.new_empty((), dtype=_accumulation_dtype(hidden.dtype))
    if not with_grad:
        return loss, hidden.new_empty(0), hidden.new_empty(0), hidden.new_empty(0)
    return (loss, torch.empty_like(hidden), torch.empty_like(weight),
            torch.empty_like(bias) if bias is not None else hidden.new_empty(0))


def _save_linear_gradients(ctx, inputs, output):
    ctx.save_for_backward(*output[1:])
    ctx.has_bias = inputs[2] is not None
    ctx.set_materialize_grads(False)


def _scale_linear_gradients(ctx, grad_loss, *_grads_of_gradients):
    if grad_loss is None:
        return (None,) * 9
    grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
    return (grad_hidden * grad_loss.to(grad_hidden.dtype), grad_weight * grad_loss.to(grad_weight.dtype),
            grad_bias * grad_loss.to(grad_bias.dtype) if ctx.has_bias else None) + (None,) * 6


_linear_policy_gradient_loss.register_autograd(_scale_linear_gradients, setup_context=_save_linear_gradients)


def _check_linear_inputs(hidden, weight, bias, actions, advantages, reduction):
    for name, tensor in (("hidden", hidden), ("weight", weight)) + ((("bias", bias),) if bias is not None else ()):
        _check_float(name, tensor)
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1] or weight.shape[0] == 0:
        raise ValueError(f"hidden must be [N, H] and weight [V, H] with V >= 1, got {tuple(hidden.shape)} and "
                         f"{tuple(weight.shape)}")
    if weight.dtype != hidden.dtype or (bias is not None and bias.dtype != hidden.dtype):
        raise TypeError(f"hidden, weight and bias must share a dtype, got {hidden.dtype}, {weight.dtype}"
                        + (f", {bias.dtype}" if bias is not None else ""))
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"bias must have shape [{weight.shape[0]}], got {tuple(bias.shape)}")
    _check_policy_inputs(hidden.new_empty(hidden.shape[0], 1), actions, advantages, reduction)
    _check_same_device(hidden=hidden, weight=weight, actions=actions, advantages=advantages,
                       **({"bias": bias} if bias is not None else {}))


# --- the fused ops' one eager path -----------------------------------------------------------


def _call_fused(name, first, args, diagnose=None, inplace=False):
    """Run the fused op ``torch.ops.rlgan.<name>(first, *args, with_grad) -> (loss, gradient)``,
    differentiable in ``first``.

    Traced by ``torch.compile`` (or called directly as ``torch.ops.rlgan.*``), the op's own
    autograd formula and fake implementation (:func:`register_fused_ops`) apply.  In eager mode
    :class:`_FusedLoss` runs the same kernel through the op's ``*_eager`` twin, which has no
    formula of its own: a smaller per-call cost, the ``inplace`` variant, and a backward pass that
    never waits for the device.  ``diagnose`` explains a NaN loss by raising the error behind it
    (if any); on CUDA it runs once the device has computed the loss (:func:`check_pending_errors`).
    """
    if torch.compiler.is_compiling():
        loss, _ = getattr(torch.ops.rlgan, name).default(first, *args, first.requires_grad)
        return loss
    eager = getattr(torch.ops.rlgan, name + "_eager").default
    if first.requires_grad and torch.is_grad_enabled():
        loss = _FusedLoss.apply(eager, inplace, first, *args)
    else:
        loss, _ = eager(first, *args, False)
    if first.is_cuda:  # earlier calls' losses, looked at once this call's kernels are queued
        check_pending_errors(wait=False)
        if diagnose is not None:
            _watch(loss, diagnose)
    return loss


# CUDA calls whose loss has not been looked at yet: (the loss in pinned host memory, the event
# after which it is there, the check that explains a NaN).
_pending = []


def _watch(loss, diagnose):
    """Copy a CUDA ``loss`` to the host without waiting, to be looked at once the device got there."""
    host = torch.empty((), dtype=loss.dtype, pin_memory=True)
    host.copy_(loss.detach(), non_blocking=True)
    done = torch.cuda.Event()
    done.record(torch.cuda.current_stream(loss.device))
    _pending.append((host, done, diagnose))


def check_pending_errors(wait=True):
    """Raise the error behind a NaN loss of an earlier fused CUDA call (out-of-range actions).

    On CUDA the actions are validated on the device, so that no call waits for it: a row with a bad
    action comes out NaN, and the check that names the action runs once the device has computed the
    loss.  Every fused call does this without waiting (so an error surfaces at the next call, or at
    the backward pass); ``wait=True`` first waits for the device, so that nothing is left unchecked
    (a training loop might call it at the end).
    """
    while _pending:
        host, done, diagnose = _pending[0]
        if not done.query():
            if not wait:
                return
            done.synchronize()
        _pending.pop(0)
        if not math.isfinite(host.item()):
            diagnose()


class _FusedLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, op, inplace, first, *args):
        if inplace:  # the kernel leaves d loss / d first in first's storage
            loss = torch.ops.rlgan.policy_gradient_loss_.default(first, *args)
            grad = first
        else:
            loss, grad = op(first, *args, True)
        ctx.save_for_backward(grad)
        ctx.set_materialize_grads(False)
        ctx.num_args = len(args)
        ctx.applied_scale = None  # the incoming gradient already multiplied into grad, if any
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        nothing = (None,) * ctx.num_args
        if grad_loss is None:
            return (None, None, None) + nothing
        (grad,) = ctx.saved_tensors
        grad = grad.detach()
        if grad.is_cuda:
            check_pending_errors(wait=False)
            # grad *= grad_loss, skipped on the device when grad_loss is 1: no wait for the device.
            # The gradient is this loss's own buffer (or the logits' storage, in place), so it is
            # scaled in place; a second backward (retain_graph) undoes the first scale.
            scale = grad_loss.detach()
            torch.ops.rlgan.scale_gradient_.default(grad, scale, ctx.applied_scale)
            ctx.applied_scale = scale
            return (None, None, grad) + nothing
        scale = grad_loss.item()  # on the CPU: no wait
        if scale != 1:
            grad = grad * scale
        return (None, None, grad) + nothing


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


def register_fused_ops():
    """Give the extension's ops their fake implementations and autograd formulas (called once, by
    :func:`rlgan_core.extension.status`, as soon as the ops exist)."""

    def gan_loss_fake(d_fake, rewards, reward_weights, baseline, temperature, eps, with_grad):
        loss = d_fake.new_empty((), dtype=_accumulation_dtype(d_fake.dtype))
        return loss, torch.empty_like(d_fake) if with_grad else d_fake.new_empty(0)

    def policy_loss_fake(logits, actions, advantages, entropy_coef, ignore_index, reduction, with_grad):
        loss = logits.new_empty((), dtype=_accumulation_dtype(logits.dtype))
        return loss, torch.empty_like(logits) if with_grad else logits.new_empty(0)

    for name, fake in (("reward_weighted_gan_loss", gan_loss_fake), ("policy_gradient_loss", policy_loss_fake)):
        for variant in (name, f"{name}_eager"):
            torch.library.register_fake(f"rlgan::{variant}", fake)

    @torch.library.register_fake("rlgan::policy_gradient_loss_")
    def _(logits, actions, advantages, entropy_coef, ignore_index, reduction):
        return logits.new_empty((), dtype=_accumulation_dtype(logits.dtype))

    @torch.library.register_fake("rlgan::scale_gradient_")
    def _(grad, scale, previous):
        return None

    def save_gradient(ctx, inputs, output):
        ctx.save_for_backward(output[1])
        # The second output (the gradient itself) is never differentiated through: without this,
        # autograd would fill a zero [N, V] tensor as its incoming gradient on every backward.
        ctx.set_materialize_grads(False)

    def scale_gradient(ctx, grad_loss, _grad_of_gradient):
        if grad_loss is None:
            return (None,) * 7
        (grad,) = ctx.saved_tensors
        return (grad * grad_loss.to(grad.dtype),) + (None,) * 6

    for name in ("rlgan::reward_weighted_gan_loss", "rlgan::policy_gradient_loss"):
        torch.library.register_autograd(name, scale_gradient, setup_context=save_gradient)
