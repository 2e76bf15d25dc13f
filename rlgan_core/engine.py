"""The training engine: a loop of strategy steps whose generator losses take in rewards from plugins.

The loop (``Engine.run``) reads top to bottom: a step of the configured strategy (by default
``gan``: a discriminator update, then a generator update in which the configured rewards become
advantages that weight the generator loss), evaluation at set steps and at the end of each of
the strategy's phases, then the plugin hooks.  Logging, checkpoints, evaluation, progress and
pictures are plugins (``rlgan_core.builtin``).
"""

import inspect
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import checkpoint, distributed, extension
from .config import Config, ComponentConfig, to_dict
from .errors import CheckpointError, ConfigError, RewardError
from .plugins import describe_plugins, get_plugin_manager, registries
from .registry import Entry
from .reward import RewardContext


@dataclass
class State:
    """What a checkpoint must restore besides weights and random number generators."""

    step: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    initial_metrics: dict[str, float] = field(default_factory=dict)
    skipped_batches: int = 0
    phase_metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # metrics at the end of each phase


@dataclass
class StepOutput:
    """One step's results, as detached tensors (call ``float()`` only when you need a number)."""

    step: int
    losses: dict[str, torch.Tensor]
    rewards: dict[str, torch.Tensor]
    seconds: float = 0.0  # wall time of the step on this rank
    samples: int = 0  # samples this rank generated for the generator update


@dataclass
class BoundReward:
    """A configured reward: the callable, its weight, whether its gradient is used, its origin."""

    name: str
    plugin: str
    reward: object
    weight: float
    pathwise: bool


class Engine:
    def __init__(self, config: Config, run_dir: str | Path, pm=None):
        self.config = config
        self.run_dir = Path(run_dir)
        self.pm = pm or get_plugin_manager()
        self.stash: dict = {}
        self.state = State()
        extension.set_backend(config.kernel.backend)
        self.device = resolve_device(config.run.device)
        distributed.setup(self.device)
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        # With several processes, only rank 0 logs, evaluates, draws and saves.
        self.hook = self.pm.hook if self.rank == 0 else _SilentHooks()
        torch.manual_seed(config.run.seed)
        found = registries(self.pm)
        self.data = build(found.data.get(config.data.name), config.data, "data")
        self.generator = build(found.models.get(config.generator.name), config.generator, "generator", self.data)
        self.discriminator = build(
            found.models.get(config.discriminator.name), config.discriminator, "discriminator", self.data
        )
        self.generator.to(self.device)
        self.discriminator.to(self.device)
        self.trained_generator = distributed.wrap(self.generator)
        self.trained_discriminator = distributed.wrap(self.discriminator)
        self.rewards = [bind_reward(found.rewards.get(name), name, rc) for name, rc in config.rewards.items()]
        self.reward_weights = torch.tensor([r.weight for r in self.rewards] or [0.0], device=self.device)
        opt = config.optimizer
        self.generator_optimizer = torch.optim.Adam(
            self.generator.parameters(), lr=opt.generator_lr, betas=tuple(opt.betas)
        )
        self.discriminator_optimizer = torch.optim.Adam(
            self.discriminator.parameters(), lr=opt.discriminator_lr, betas=tuple(opt.betas)
        )
        self.dataset = {key: value.to(self.device) for key, value in self.data.tensors().items()}
        self.data_rng = torch.Generator().manual_seed(config.run.seed + 1)
        self.latent_rng = torch.Generator(self.device).manual_seed(config.run.seed + 2)
        self._order = torch.empty(0, dtype=torch.long)
        self.strategy = build(found.strategies.get(config.strategy.name), config.strategy, "strategy", self)

    # --- the loop ------------------------------------------------------------------------------

    def run(self) -> dict:
        """Train from ``state.step`` to ``run.steps``; return the summary written to summary.json."""
        started = time.perf_counter()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.hook.rlgan_train_start(engine=self)
        if self.state.step == 0:
            self.evaluate()
            self.state.initial_metrics = dict(self.state.metrics)
        while self.state.step < self.config.run.steps:
            output = self.train_step()
            self.state.step += 1
            step, last = self.state.step, self.config.run.steps
            finished_phase = self.strategy.phase(step - 1)
            phase_ended = step < last and self.strategy.phase(step) != finished_phase
            if step % self.config.evaluation.every == 0 or step == last or phase_ended:
                self.evaluate()
            if phase_ended:
                self.state.phase_metrics[finished_phase] = dict(self.state.metrics)
            self.hook.rlgan_step_end(engine=self, output=output)
        summary = self.summary(time.perf_counter() - started)
        self.hook.rlgan_train_end(engine=self, summary=summary)
        if self.rank == 0:
            checkpoint.write_atomically(self.run_dir / "summary.json", json.dumps(summary, indent=2))
        return summary

    def train_step(self) -> StepOutput:
        """One step of the configured strategy (``[strategy]``; by default ``gan``)."""
        return self.strategy.step()

    # --- the parts the loop uses --------------------------------------------------------------

    def compute_rewards(self, samples: torch.Tensor, context: RewardContext, per_token: bool = False) -> torch.Tensor | None:
        """Each configured reward on ``samples``, checked, as columns of an [N, K] tensor.

        With ``per_token`` (sequences ``[N, T]``), a reward may also return ``[N, T]``; the
        result is then ``[N, T, K]``, a per-sample reward repeated for each token.
        A reward that raises or returns a bad value stops the run with an error naming it, its
        plugin and the step; with ``run.on_bad_reward = "skip"`` the generator update of this
        batch is skipped instead (``None``), and counted.  All ranks decide together.
        """
        n = len(samples)
        shapes = [(n,), tuple(samples.shape[:2])] if per_token else [(n,)]
        columns, problem = [], None
        for bound in self.rewards:
            where = f"reward {bound.name!r} (plugin {bound.plugin!r}) at step {context.step}"
            try:
                value = bound.reward(samples, context)
            except Exception as error:
                problem = f"{where} raised {type(error).__name__}: {error}"
                break
            if not isinstance(value, torch.Tensor) or tuple(value.shape) not in shapes:
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                expected = " or ".join(map(str, shapes))
                problem = f"{where} returned {shape}; expected a tensor of shape {expected}"
            elif value.device != samples.device:
                problem = f"{where} returned a tensor on {value.device}; expected {samples.device}"
            elif not torch.isfinite(value).all():
                problem = f"{where} returned NaN or infinite values"
            if problem:
                break
            if per_token and value.dim() == 1:
                value = value.unsqueeze(1).expand(shapes[1])
            columns.append(value if bound.pathwise else value.detach())
        if distributed.any_rank(problem is not None, self.device):
            if self.config.run.on_bad_reward == "skip":
                self.state.skipped_batches += 1
                return None
            raise RewardError(problem or f"a reward failed on another rank at step {context.step}")
        if not columns:
            return torch.zeros(shapes[-1] + (1,), device=samples.device)
        return torch.stack(columns, dim=-1).float()

    def step_output(self, losses: dict, rewards: torch.Tensor | None, started: float, samples: int) -> StepOutput:
        """A strategy's ``StepOutput``: its losses, the mean of each reward, its wall time."""
        means = {}
        if rewards is not None:
            means = {r.name: rewards[..., i].detach().mean() for i, r in enumerate(self.rewards)}
        return StepOutput(self.state.step, losses, means, time.perf_counter() - started, samples)

    def next_batch(self) -> dict[str, torch.Tensor]:
        """This rank's part of the next global batch of real data, reshuffled every epoch."""
        size = self.config.run.batch_size * self.world_size
        while len(self._order) < size:
            fresh = torch.randperm(len(self.dataset["x"]), generator=self.data_rng)
            self._order = torch.cat([self._order, fresh])
        indices, self._order = self._order[:size], self._order[size:]
        indices = distributed.local_part(indices).to(self.device)
        return {key: value[indices] for key, value in self.dataset.items()}

    def sample_latents(self, size: int | None = None) -> torch.Tensor:
        """This rank's part of the next global batch of latents (of ``size``, by default the batch size)."""
        size = size or self.config.run.batch_size * self.world_size
        latents = torch.randn(size, self.generator.latent_dim, generator=self.latent_rng, device=self.device)
        return distributed.local_part(latents)

    @torch.no_grad()
    def generate(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` samples from a fixed seed (not the training RNG), on the CPU."""
        rng = torch.Generator(self.device).manual_seed(seed)
        latents = torch.randn(n, self.generator.latent_dim, generator=rng, device=self.device)
        was_training = self.generator.training
        self.generator.eval()
        samples = self.generator(latents).cpu()
        self.generator.train(was_training)
        return samples

    def evaluate(self) -> dict[str, float]:
        """Ask the plugins for metrics of a fixed-seed sample batch; tell them the merged result."""
        if self.rank != 0:
            return {}
        # evaluation must not move the training RNGs, or a resumed run would diverge from an uninterrupted one
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            samples = self.generate(self.config.evaluation.samples)
            metrics = {}
            for result in reversed(self.hook.rlgan_evaluate(engine=self, samples=samples)):
                metrics.update(result or {})
            self.state.metrics = metrics
            self.hook.rlgan_evaluation_end(engine=self, samples=samples, metrics=metrics)
        return metrics

    def summary(self, wall_time: float) -> dict:
        return {
            "steps": self.state.step,
            "wall_time_s": round(wall_time, 3),
            "device": str(self.device),
            "processes": self.world_size,
            "skipped_batches": self.state.skipped_batches,
            "kernel": "fused" if extension.use_fused(self.device) else "fallback",
            "config": to_dict(self.config),
            "plugins": self.plugin_versions(),
            "metrics": dict(self.state.metrics),
            **{f"{key}_initial": value for key, value in self.state.initial_metrics.items()},
            **{f"{key}_{phase}": value for phase, metrics in self.state.phase_metrics.items() for key, value in metrics.items()},
            **self.state.metrics,
        }

    # --- checkpoints --------------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        tensors = {}
        for prefix, module in (("generator", self.generator), ("discriminator", self.discriminator)):
            tensors.update({f"{prefix}.{k}": v for k, v in module.state_dict().items()})
        optimizers = {}
        for prefix, optimizer in (("generator_optimizer", self.generator_optimizer),
                                  ("discriminator_optimizer", self.discriminator_optimizer)):
            optimizers[prefix] = _split_optimizer_state(optimizer.state_dict(), prefix, tensors)
        for name, rng_state in self._rng_states().items():
            tensors[f"rng.{name}"] = rng_state
        tensors["data.order"] = self._order
        for prefix, holder in self._stateful_parts():
            tensors.update({f"{prefix}.{k}": v for k, v in holder.state_dict().items()})
        state = {
            "metrics": self.state.metrics,
            "initial_metrics": self.state.initial_metrics,
            "skipped_batches": self.state.skipped_batches,
            "phase_metrics": self.state.phase_metrics,
            "optimizers": optimizers,
            "config": to_dict(self.config),
            "plugins": self.plugin_versions(),
        }
        return checkpoint.save(self.run_dir / "checkpoints", self.state.step, tensors, state, self.config.checkpoint.keep)

    def load_checkpoint(self, path: Path) -> None:
        tensors, state = checkpoint.load(path)
        try:
            for prefix, module in (("generator", self.generator), ("discriminator", self.discriminator)):
                module.load_state_dict({k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")})
            for prefix, optimizer in (("generator_optimizer", self.generator_optimizer),
                                      ("discriminator_optimizer", self.discriminator_optimizer)):
                optimizer.load_state_dict(_join_optimizer_state(state["optimizers"][prefix], prefix, tensors))
            torch.set_rng_state(tensors["rng.torch"])
            self.data_rng.set_state(tensors["rng.data"])
            self.latent_rng.set_state(tensors["rng.latent"])
            if self.device.type == "cuda":
                torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
            self._order = tensors["data.order"]
            for prefix, holder in self._stateful_parts():
                holder.load_state_dict({k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")})
            self.state = State(
                state["step"], state["metrics"], state["initial_metrics"], state["skipped_batches"], state["phase_metrics"]
            )
        except (KeyError, RuntimeError, ValueError) as error:
            raise CheckpointError(f"{path}: does not match this run's models or config ({error})") from None

    def plugin_versions(self) -> dict[str, str | None]:
        """Each loaded plugin's distribution version (``None`` for built-ins)."""
        return {entry["name"]: entry["version"] for entry in describe_plugins(self.pm)}

    def _stateful_parts(self):
        """The strategy and the rewards that keep state across steps, with their checkpoint prefixes."""
        parts = [("strategy", self.strategy)]
        parts += [(f"reward.{r.name}", r.reward) for r in self.rewards if hasattr(r.reward, "state_dict")]
        return parts

    def _rng_states(self) -> dict[str, torch.Tensor]:
        states = {"torch": torch.get_rng_state(), "data": self.data_rng.get_state(), "latent": self.latent_rng.get_state()}
        if self.device.type == "cuda":
            states["cuda"] = torch.cuda.get_rng_state(self.device)
        return states


# --- building a run from a config ----------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"run.device: unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"run.device: {name!r} asked for, but this PyTorch sees no CUDA device")
    return device


def build(entry: Entry, component: ComponentConfig, section: str, *args):
    """Call a registered factory with the config's options; unknown options are config errors."""
    _check_options(entry.factory, component.options, f"[{section}] ({entry.name!r} from plugin {entry.plugin!r})", len(args))
    try:
        return entry.factory(*args, **component.options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"[{section}] {entry.name!r} (plugin {entry.plugin!r}): {error}") from error


def bind_reward(entry: Entry, name: str, reward_config) -> BoundReward:
    reward = build(entry, ComponentConfig(name, reward_config.options), f"rewards.{name}")
    if reward_config.pathwise and not getattr(reward, "differentiable", False):
        raise ConfigError(
            f"[rewards.{name}] pathwise = true, but reward {name!r} (plugin {entry.plugin!r}) is not differentiable"
        )
    return BoundReward(name, entry.plugin, reward, reward_config.weight, reward_config.pathwise)


def _check_options(factory, options: dict, where: str, positional: int) -> None:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    parameters = list(signature.parameters.values())[positional:]
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return
    accepted = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in options:
        if key not in accepted:
            raise ConfigError(f"{where}: unknown option {key!r} (accepted: {', '.join(accepted) or 'none'})")


def _split_optimizer_state(state_dict: dict, prefix: str, tensors: dict) -> dict:
    """Move an optimizer state's tensors into ``tensors``; return the JSON-safe rest."""
    rest = {"param_groups": state_dict["param_groups"], "state": {}}
    for index, values in state_dict["state"].items():
        rest["state"][str(index)] = {}
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.{index}.{key}"] = value
            else:
                rest["state"][str(index)][key] = value
    return rest


def _join_optimizer_state(rest: dict, prefix: str, tensors: dict) -> dict:
    state = {}
    for index, values in rest["state"].items():
        state[int(index)] = dict(values)
    for name, value in tensors.items():
        if name.startswith(prefix + "."):
            index, key = name[len(prefix) + 1:].split(".", 1)
            state.setdefault(int(index), {})[key] = value
    return {"param_groups": rest["param_groups"], "state": state}


class _SilentHooks:
    """Stands in for ``pm.hook`` on ranks other than 0: every hook call does nothing."""

    def __getattr__(self, name):
        return lambda **kwargs: []
