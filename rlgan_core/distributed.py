"""Data-parallel training on torch.distributed (gloo on CPU, NCCL on CUDA).

Every rank draws the same global batch (data indices and latents from identically seeded
generators) and trains on its slice; DistributedDataParallel averages the gradients; reward
baselines, whitening and the softmax weights of the generator loss use statistics over the global
batch.  So N processes with per-rank batch B train the same model as one process with batch N*B.
"""

import os

import torch
import torch.distributed as dist

from . import ops


def setup(device: torch.device) -> None:
    """Join the process group that torchrun describes in the environment (no-op without one).

    Under torchrun the workers meet in the launcher's store, which outlives a restart
    (``--max-restarts``): each attempt keeps its keys under a prefix of its own, so that the
    workers of a restart never read the addresses of the processes they replace."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True" and attempt is not None:
            store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False)
            dist.init_process_group(backend=backend, store=dist.PrefixStore(f"rlgan/attempt-{attempt}", store),
                                    rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]))
        else:
            dist.init_process_group(backend=backend)
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def wrap(module: torch.nn.Module) -> torch.nn.Module:
    """The module to train through: DistributedDataParallel when there are several ranks."""
    if world_size() == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module)


def local_part(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's equal slice of a global batch (first dimension)."""
    size = len(tensor) // world_size()
    return tensor[rank() * size : (rank() + 1) * size]


def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's part of a global batch, concatenated in rank order (the inverse of ``local_part``)."""
    if world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def average_gradients(module: torch.nn.Module) -> None:
    """Replace each gradient of ``module``'s parameters by its mean over the ranks."""
    if world_size() == 1:
        return
    for parameter in module.parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            parameter.grad.div_(world_size())


def any_rank(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` holds on any rank (so that all ranks take the same branch)."""
    if world_size() == 1:
        return flag
    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def broadcast_object(value):
    """Rank 0's ``value`` on every rank."""
    if world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def reward_weighted_gan_loss(d_fake, rewards, reward_weights, *, baseline, temperature, eps):
    """:func:`rlgan_core.ops.reward_weighted_gan_loss` over the global batch, from this rank's part.

    With one process it is that op.  With W ranks, each rank's advantages use the global mean and
    standard deviation; the op then weights the local samples by the local softmax, and a constant
    factor W * (local softmax sum) / (global softmax sum) turns that into this rank's share of the
    global loss, so that DDP's gradient average equals the one-process gradient.
    """
    if world_size() == 1:
        return ops.reward_weighted_gan_loss(
            d_fake, rewards, reward_weights, baseline=baseline, temperature=temperature, eps=eps
        )
    r = ops.advantages(rewards.detach().double() @ reward_weights.double(), baseline, eps, global_batch=True)
    scores = temperature * r
    top = scores.max().clone()
    dist.all_reduce(top, op=dist.ReduceOp.MAX)
    local_sum = torch.exp(scores - top).sum()
    global_sum = local_sum.clone()
    dist.all_reduce(global_sum)
    loss = ops.reward_weighted_gan_loss(
        d_fake, r.float().unsqueeze(1), torch.ones(1, device=d_fake.device), baseline="none",
        temperature=temperature, eps=eps,
    )
    return loss * (world_size() * local_sum / global_sum).float()
