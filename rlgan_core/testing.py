"""Conformance checks for plugin authors: run them in a plugin's own tests before publishing it.

    from rlgan_core.testing import check_reward, check_model, check_data_source, check_strategy

Each check exercises one plugin against the contract of ``docs/plugins.md`` and raises
:class:`ContractError` (an ``AssertionError``, so pytest shows it as a failed test) that states the
contract and where it was broken.  The module is also a pytest plugin (entry point ``pytest11``):
with rlgan installed, any test can ask for the ``rlgan_quick_config`` fixture, a small digits run
config to train a plugin for a few steps.
"""

import copy
import tempfile
from pathlib import Path

import pytest
import torch

from .config import parse_config
from .hookspecs import hookimpl
from .reward import RewardContext
from .scoring import is_future

__all__ = ["ContractError", "check_data_source", "check_model", "check_policy", "check_reward", "check_strategy",
           "quick_config"]


class ContractError(AssertionError):
    """A plugin broke its part of the contract."""

    def __init__(self, who: str, contract: str, found: str):
        super().__init__(f"{who}: {contract}; {found}")


def check_reward(reward, samples: torch.Tensor | None = None, context: RewardContext | None = None) -> None:
    """A reward (an instance) returns one finite floating-point value per sample, as a tensor (or a
    future of one) on the samples' device; works for a batch of one; needs no gradient (the
    samples of a reward that is not ``pathwise`` carry none); and, when it says it is
    ``differentiable``, passes a gradient back to the samples.  ``samples`` default to 8 random 8x8 digits in [-1, 1]."""
    who = f"reward {type(reward).__name__}"
    samples = torch.rand(8, 64) * 2 - 1 if samples is None else samples.detach()
    context = context or RewardContext(step=0, device=samples.device)
    for batch in (samples, samples[:1]):
        with torch.no_grad():
            try:
                value = reward(batch, context)
            except Exception as error:
                raise ContractError(who, "a reward scores samples that carry no gradient",
                                    f"called on {len(batch)} such samples it raised {type(error).__name__}: {error}") from error
        if is_future(value):
            try:  # a future: the engine waits for it
                value = value.result()
            except Exception as error:
                raise ContractError(who, "a reward's future gives its values",
                                    f"its result() raised {type(error).__name__}: {error}") from error
        if not isinstance(value, torch.Tensor):
            raise ContractError(who, "a reward returns a tensor (or a future of one)", f"it returned {type(value).__name__}")
        if tuple(value.shape) != (len(batch),):
            raise ContractError(who, f"a reward returns one value per sample, shape ({len(batch)},)",
                                f"it returned shape {tuple(value.shape)} for {len(batch)} samples")
        if not value.is_floating_point():
            raise ContractError(who, "a reward returns floating-point values (float32 is best)",
                                f"it returned {value.dtype}")
        if value.device != batch.device:
            raise ContractError(who, "a reward returns its values on the samples' device",
                                f"it returned them on {value.device} for samples on {batch.device}")
        if not torch.isfinite(value).all():
            raise ContractError(who, "a reward returns finite values", "it returned NaN or infinite values")
    if getattr(reward, "differentiable", False):
        leaf = samples.clone().requires_grad_()
        value = reward(leaf, context)
        if not value.requires_grad:
            raise ContractError(who, "a reward with differentiable = True returns values that carry a gradient "
                                "to the samples", "its values carry none")
        (gradient,) = torch.autograd.grad(value.sum(), leaf, allow_unused=True)
        if gradient is None or not torch.isfinite(gradient).all():
            raise ContractError(who, "a differentiable reward passes a finite gradient back to the samples",
                                "the gradient was missing or not finite")


def check_model(model: torch.nn.Module, data, role: str = "generator") -> None:
    """A model of role ``generator`` (with ``latent_dim``) maps ``[N, latent_dim]`` latents to
    ``[N, *data.shape]``; one of role ``discriminator`` maps ``[N, *data.shape]`` samples to ``[N]``
    logits.  Either keeps the input's dtype and device (a generator of token sequences returns
    integer token ids instead), in train and in eval mode (evaluation calls models in eval mode
    under no_grad), for a batch of 4 and of 1."""
    who = f"{role} {type(model).__name__}"
    if role == "generator":
        if not isinstance(getattr(model, "latent_dim", None), int):
            raise ContractError(who, "a generator has an integer attribute latent_dim", "it has none")
        make_input, expected = (lambda n: torch.randn(n, model.latent_dim)), (lambda n: (n, *data.shape))
    elif role == "discriminator":
        make_input, expected = (lambda n: torch.rand(n, *data.shape) * 2 - 1), (lambda n: (n,))
    else:
        raise ValueError(f"role must be 'generator' or 'discriminator', got {role!r}")
    was_training = model.training
    try:
        for train in (True, False):
            model.train(train)
            for n in ((4, 2) if train else (4, 1)):  # batch norm cannot train on one sample
                inputs = make_input(n)
                with torch.set_grad_enabled(train):
                    try:
                        output = model(inputs)
                    except Exception as error:
                        raise ContractError(who, f"a {role} takes inputs of shape {tuple(inputs.shape)}",
                                            f"in {'train' if train else 'eval'} mode it raised "
                                            f"{type(error).__name__}: {error}") from error
                mode = "train" if train else "eval"
                if not isinstance(output, torch.Tensor) or tuple(output.shape) != expected(n):
                    found = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
                    raise ContractError(who, f"a {role} returns shape {expected(n)} for inputs {tuple(inputs.shape)}",
                                        f"in {mode} mode it returned {found}")
                tokens = role == "generator" and not output.is_floating_point() and not output.is_complex()
                if (output.dtype != inputs.dtype and not tokens) or output.device != inputs.device:
                    raise ContractError(who, f"a {role} keeps its input's dtype and device ({inputs.dtype}, "
                                        f"{inputs.device})", f"in {mode} mode it returned {output.dtype} on {output.device}")
    finally:
        model.train(was_training)


def check_policy(model: torch.nn.Module, data, pathwise: bool = False) -> None:
    """A generator that is a policy (:func:`rlgan_core.is_policy`): for ``outputs = model(z)``,
    ``model.distribution(outputs)`` draws samples of shape ``[N, *data.shape]`` whose ``log_prob``
    and ``entropy`` are ``[N]`` (one value per sample, summed over its elements) and whose
    ``log_prob`` carries gradients to the model's parameters; with ``pathwise`` (a config's
    ``pathwise = true`` rewards), its ``rsample`` does too."""
    from .policy import policy_problem

    who = f"policy {type(model).__name__}"
    check_model(model, data, "generator")
    problem = policy_problem(model)
    if problem:
        raise ContractError(who, "a policy has a distribution(outputs) method that works for it", problem)
    n = 4
    policy = model.distribution(model(torch.randn(n, model.latent_dim)))
    samples = policy.sample()
    if tuple(samples.shape) != (n, *data.shape):
        raise ContractError(who, f"a policy's samples have shape {(n, *data.shape)}", f"they have {tuple(samples.shape)}")
    for name in ("log_prob", "entropy"):
        value = policy.log_prob(samples) if name == "log_prob" else policy.entropy()
        if tuple(value.shape) != (n,):
            raise ContractError(who, f"{name} is one value per sample, shape {(n,)} (summed over a sample's elements; "
                                "torch.distributions.Independent does it)", f"it has shape {tuple(value.shape)}")
    draws = {"log_prob": lambda: policy.log_prob(samples)}
    if pathwise:
        if not policy.has_rsample:
            raise ContractError(who, "a policy for pathwise rewards has reparameterised samples (rsample)", "it has none")
        draws["rsample"] = lambda: policy.rsample()
    for name, draw in draws.items():
        model.zero_grad(set_to_none=True)
        policy = model.distribution(model(torch.randn(n, model.latent_dim)))
        value = draw().sum()
        if value.requires_grad:
            value.backward()
        if not any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters()):
            raise ContractError(who, f"a policy's {name} carries gradients to its parameters", "none reached them")
    model.zero_grad(set_to_none=True)


def check_data_source(factory, options: dict | None = None, value_range: tuple[float, float] | None = None) -> None:
    """A data source built by ``factory(**options)`` has a ``shape`` and ``tensors()`` with ``"x"``
    ``[M, *shape]`` of finite floats and extra fields of ``M`` rows; building it again gives the same
    tensors (runs must be reproducible); and, with ``value_range``, every value lies in it (a
    generator ending in tanh, as the built-in one does, reaches only [-1, 1])."""
    options = options or {}
    source = factory(**options)
    who = f"data source {type(source).__name__}"
    shape = getattr(source, "shape", None)
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ContractError(who, "a data source has a shape, a tuple of positive integers", f"it has {shape!r}")
    tensors = source.tensors()
    x = tensors.get("x") if isinstance(tensors, dict) else None
    if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != shape or len(x) == 0:
        found = tuple(x.shape) if isinstance(x, torch.Tensor) else type(tensors).__name__
        raise ContractError(who, f"tensors() returns a dict whose 'x' is [M, *shape] = [M, {', '.join(map(str, shape))}]",
                            f"found {found}")
    if not x.is_floating_point() or not torch.isfinite(x).all():
        raise ContractError(who, "its samples are finite floating-point values", f"'x' is {x.dtype} or not finite")
    for name, field in tensors.items():
        if not isinstance(field, torch.Tensor) or len(field) != len(x):
            raise ContractError(who, f"every field of tensors() has one row per sample ({len(x)})",
                                f"{name!r} has {len(field) if isinstance(field, torch.Tensor) else type(field).__name__}")
    if value_range is not None and not (x.min() >= value_range[0] and x.max() <= value_range[1]):
        raise ContractError(who, f"its samples lie in {list(value_range)}",
                            f"they span [{float(x.min()):.4g}, {float(x.max()):.4g}]")
    again = factory(**copy.deepcopy(options)).tensors()
    for name, field in tensors.items():
        if not torch.equal(field, again.get(name)):
            raise ContractError(who, "building it again with the same options gives the same tensors",
                                f"{name!r} differs")


def check_strategy(config: dict, steps: int = 4) -> None:
    """A strategy's run (``config``, a dict as read from TOML, naming the strategy and whatever it
    needs) stopped at half its ``steps``, saved and resumed, ends bitwise equal to the same run
    uninterrupted: everything the strategy keeps is in its models, its optimizers or its
    ``state_dict``."""
    from .checkpoint import list_checkpoints
    from .engine import Engine

    def run(run_dir, stop_at=None, resume=False):
        raw = copy.deepcopy(config)
        raw["run"] = {**raw.get("run", {}), "steps": steps}
        raw["checkpoint"] = {"every": steps, "keep": 2}
        raw["evaluation"] = {"every": steps, "samples": 16}
        raw["logging"] = {"progress": False, "tensorboard": False}
        engine = Engine(parse_config(raw, "check_strategy"), run_dir)
        if resume:
            engine.load_checkpoint(list_checkpoints(Path(run_dir) / "checkpoints")[-1])
        if stop_at is None:
            engine.run()
            return engine
        # stopped as SIGTERM stops a run: after step stop_at, with a checkpoint of that step
        stopper = StopAt(stop_at)
        engine.pm.register(stopper)
        try:
            engine.run()
        finally:
            engine.pm.unregister(stopper)
        return engine

    name = config.get("strategy", {}).get("name", "gan")
    with tempfile.TemporaryDirectory() as folder:
        whole = run(Path(folder) / "whole")
        run(Path(folder) / "part", stop_at=steps // 2)
        resumed = run(Path(folder) / "part", resume=True)
        for role, model in whole.models.items():
            for key, value in model.state_dict().items():
                if not torch.equal(value, resumed.models[role].state_dict()[key]):
                    raise ContractError(f"strategy {name!r}", "a run resumed from a checkpoint continues exactly (keep "
                                        "what the strategy needs across steps in state_dict)",
                                        f"after {steps} steps {role}.{key} differs from the uninterrupted run's")


class StopAt:
    """A plugin that asks the run to stop once step ``step`` is done."""

    def __init__(self, step: int):
        self.step = step

    @hookimpl
    def rlgan_step_end(self, engine, output):
        if engine.state.step == self.step:
            engine.request_stop(f"stopped at step {self.step}")


PLUGIN_TABLES = ("strategy", "data", "generator", "discriminator")  # tables whose "name" is a plugin's


def quick_config(**sections) -> dict:
    """A digits run small enough to train in seconds on a CPU, as a dict.  Each of ``sections``
    replaces its table when it names another plugin (a ``name`` in ``[strategy]``, ``[data]``,
    ``[generator]`` or ``[discriminator]``) or is ``rewards``, else extends it; ``None`` removes it."""
    raw = {
        "run": {"name": "quick", "steps": 6, "batch_size": 16, "device": "cpu"},
        "generator": {"name": "mlp_generator", "latent_dim": 8, "hidden": [32]},
        "discriminator": {"name": "mlp_discriminator", "hidden": [32]},
        "evaluation": {"every": 3, "samples": 64},
        "checkpoint": {"every": 3, "keep": 1},
        "logging": {"progress": False, "tensorboard": False},
    }
    for name, values in sections.items():
        replaces = values is None or name == "rewards" or (name in PLUGIN_TABLES and "name" in values)
        raw[name] = values if replaces else {**raw.get(name, {}), **values}
    return {name: values for name, values in raw.items() if values is not None}


@pytest.fixture
def rlgan_quick_config():
    """:func:`quick_config`, as a fixture of the rlgan pytest plugin."""
    return quick_config

