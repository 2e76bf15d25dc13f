"""The training context: what a strategy trains with, and nothing of the loop that runs it.

The engine builds one :class:`TrainingContext` per run and hands it to the strategy.  It holds the
model roles the strategy asked for (and their optimizers), the data, the random number
generators, the configured rewards and the run's progress; its methods draw batches and latents,
score samples with the rewards and turn rewards into advantages.  Everything in it is saved with
each checkpoint, so a strategy that keeps its state here (or in its own ``state_dict``) resumes
exactly.
"""

import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import checkpoint, distributed, ops
from .config import Config
from .datasource import DataSource
from .errors import ConfigError, RewardError
from .reward import RewardContext
from .scoring import BoundReward, PendingRewards, RewardCall


RESERVED_ROLES = ("rng", "data", "strategy", "reward")  # checkpoint prefixes of other things


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
    diagnostics: dict[str, torch.Tensor] = field(default_factory=dict)  # a strategy's own figures (logged as policy/NAME)


class TrainingContext:
    """The models, optimizers, data, random number generators and rewards of a run.

    Attributes (read them; replace none):

    - ``config``: the run's :class:`rlgan_core.config.Config`; ``device``; ``rank`` and
      ``world_size`` (data-parallel processes); ``state`` (``state.step``: the step being taken).
    - ``models``: model role -> ``torch.nn.Module`` (``"generator"``, ``"discriminator"``, and any
      role a strategy adds with :meth:`add_model`); ``trained``: the same roles as the modules to
      run forward passes through when training (data-parallel wrappers under several processes);
      ``optimizers``: role -> Adam optimizer, for the trained roles.  ``generator``,
      ``discriminator``, ``generator_optimizer``, ``discriminator_optimizer``,
      ``trained_generator`` and ``trained_discriminator`` are shortcuts (``None`` without that role).
    - ``data``: the :class:`rlgan_core.DataSource`; ``dataset``: its tensors on ``device``.
    - ``data_rng`` (CPU) and ``latent_rng`` (``device``): the run's generators for data order and
      latents, saved with every checkpoint; draw from them, not from the global generator, for
      anything that must be equal on every rank and after a resume.
    - ``rewards``: the configured rewards (:class:`BoundReward`), ``reward_weights`` ``[K]``: their
      weights at the current step (a ``[rewards.NAME]`` weight may follow a schedule over steps;
      read them each step, do not keep them).
    """

    def __init__(self, config: Config, device: torch.device, data: DataSource, models: dict[str, torch.nn.Module],
                 rewards: list[BoundReward], state: State, run_dir: str | Path | None = None):
        self.config, self.device, self.data, self.rewards, self.state = config, device, data, rewards, state
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.started_from: dict | None = None  # what load_models loaded: run, checkpoint, its hash, weights
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        self.models: dict[str, torch.nn.Module] = {}
        self.trained: dict[str, torch.nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        for role, module in models.items():
            self.add_model(role, module, lr=config.optimizer.lr(role))
        self.reward_weights = torch.tensor([r.weight for r in rewards] or [0.0], device=device)
        self.dataset = {key: value.to(device) for key, value in data.tensors().items()}
        self.data_rng = torch.Generator().manual_seed(config.run.seed + 1)
        self.latent_rng = torch.Generator(device).manual_seed(config.run.seed + 2)
        self.data_order = torch.empty(0, dtype=torch.long)  # the rest of the current epoch's shuffle
        self.reward_pools: dict[str, ThreadPoolExecutor] = {}

    # --- models -------------------------------------------------------------------------------

    def average_gradients(self, role: str) -> None:
        """Average the gradients of model role ``role`` over the ranks, for an update whose forward
        pass does not go through ``trained[role]`` (which averages them itself): a method other
        than ``forward``, such as a sequence policy's ``logits``.  Nothing with one process."""
        distributed.average_gradients(self.models[role])

    def minimise(self, role: str, loss: torch.Tensor) -> torch.Tensor:
        """One update of model role ``role`` on ``loss``: its gradients zeroed, ``loss``
        backpropagated, the role's gradients averaged over the ranks (``average_gradients``) and
        its optimizer stepped; returns ``loss`` detached, for ``step_output``."""
        optimizer = self.optimizers[role]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.average_gradients(role)
        optimizer.step()
        return loss.detach()

    def add_model(self, role: str, module: torch.nn.Module, lr: float | None = None) -> None:
        """Add ``module`` as model role ``role`` (on the run's device): trained with Adam at ``lr``
        (and ``[optimizer] betas``), or frozen with ``lr=None``.  Saved with every checkpoint.
        Adam is PyTorch's fused implementation: one kernel per step instead of a dozen small ops per
        parameter, which makes the seed's MNIST step 1.35x faster on the CPU (benchmarks/test_engine.py)."""
        if role in self.models or role in RESERVED_ROLES:
            raise ValueError(f"model role {role!r} exists already or is reserved")
        module.to(self.device)
        self.models[role] = module
        if lr is None:
            module.requires_grad_(False)
            return
        self.trained[role] = distributed.wrap(module)
        betas = tuple(self.config.optimizer.betas)
        self.optimizers[role] = torch.optim.Adam(module.parameters(), lr=lr, betas=betas, fused=True)

    def load_models(self, run_dir: str, weights: str = "average") -> None:
        """Start this run's models from the newest checkpoint of ``run_dir`` (a run folder or a
        checkpoint folder; the ``init_from`` option of strategies): the generator, and every other
        role both runs have, which must have this run's shapes.  The generator gets the weights the
        trained run samples with: its weight average (role ``generator_ema``) when it has one, or
        with ``weights = "raw"`` its raw weights.  Parameters the checkpoint lacks, such as a
        policy's standard deviation, keep their initial values.  ``started_from`` records the
        resolved folder, the checkpoint and its hash (the summary reports it).  A run that has
        checkpoints of its own loads nothing: resuming it (or sampling from it) restores every
        model from them, wherever the base run is now."""
        where = f"[strategy] init_from = {run_dir!r}"
        if weights not in ("average", "raw"):
            raise ConfigError(f"[strategy] init_weights must be 'average' or 'raw', got {weights!r}")
        if self.run_dir is not None and checkpoint.newest(self.run_dir) is not None:
            return
        path = checkpoint.newest(run_dir)
        if path is None:
            raise ConfigError(f"{where}: no checkpoint there")
        tensors, state = checkpoint.load(path)
        average = weights == "average" and bool(checkpoint.section(tensors, "generator_ema"))
        for role, module in self.models.items():
            saved = checkpoint.section(tensors, "generator_ema" if role == "generator" and average else role)
            if not saved and role != "generator":
                continue
            try:
                result = module.load_state_dict(saved, strict=False)
            except RuntimeError as error:  # shapes that differ
                raise ConfigError(f"{where}: its {role} does not fit this one ({error})") from None
            if result.unexpected_keys or not saved:
                raise ConfigError(f"{where}: its {role} has parameters this one lacks: {result.unexpected_keys}")
        self.started_from = {"run": str(Path(run_dir).resolve()), "checkpoint": str(path.resolve()),
                             "tensors_sha256": state.get("tensors_sha256"),
                             "generator_weights": "generator_ema" if average else "generator"}

    @property
    def generator(self):
        return self.models.get("generator")

    @property
    def discriminator(self):
        return self.models.get("discriminator")

    @property
    def trained_generator(self):
        return self.trained.get("generator")

    @property
    def trained_discriminator(self):
        return self.trained.get("discriminator")

    @property
    def generator_optimizer(self):
        return self.optimizers.get("generator")

    @property
    def discriminator_optimizer(self):
        return self.optimizers.get("discriminator")

    # --- data and latents ---------------------------------------------------------------------

    def next_batch(self) -> dict[str, torch.Tensor]:
        """This rank's part of the next global batch of real data, reshuffled every epoch."""
        size = self.config.run.batch_size * self.world_size
        while len(self.data_order) < size:
            fresh = torch.randperm(len(self.dataset["x"]), generator=self.data_rng)
            self.data_order = torch.cat([self.data_order, fresh])
        indices, self.data_order = self.data_order[:size], self.data_order[size:]
        indices = distributed.local_part(indices).to(self.device)
        return {key: value[indices] for key, value in self.dataset.items()}

    def sample_latents(self, size: int | None = None) -> torch.Tensor:
        """This rank's part of the next global batch of latents (of ``size``, by default the batch
        size) for the generator's ``latent_dim``."""
        return self.noise(self.generator.latent_dim, size=size)

    def noise(self, *shape: int, size: int | None = None, uniform: bool = False) -> torch.Tensor:
        """This rank's part of a global batch ``[size, *shape]`` of standard normal (or, with
        ``uniform``, U[0, 1)) noise from ``latent_rng`` (``size``: by default the global batch
        size): every rank draws the same global batch and keeps its rows, so N processes draw
        what one process would, and a resumed run what the uninterrupted one did."""
        size = size or self.config.run.batch_size * self.world_size
        draw = torch.rand if uniform else torch.randn
        return distributed.local_part(draw(size, *shape, generator=self.latent_rng, device=self.device))

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's part of a global batch, concatenated in rank order: the whole batch whose
        rows :meth:`noise` (or :meth:`next_batch`) handed this rank (itself with one process)."""
        return distributed.gather_rows(tensor)

    def reward_noise(self, n: int, *shape: int) -> torch.Tensor:
        """Standard normal noise ``[n, *shape]`` for ``n`` samples being scored: this rank's rows of
        a draw for the global batch from ``latent_rng`` (``RewardContext.noise``)."""
        return self.noise(*shape, size=n * self.world_size)

    def seed(self) -> int:
        """A seed drawn from ``latent_rng``: the same on every rank and after a resume; for noise
        drawn by code that takes no generator (``torch.distributions``' ``sample()``), under
        ``torch.random.fork_rng`` with ``torch.manual_seed(seed)``."""
        return int(torch.randint(2**62, (1,), generator=self.latent_rng, device=self.device))

    # --- rewards ------------------------------------------------------------------------------

    def reward_context(self, **fields) -> RewardContext:
        """A :class:`rlgan_core.RewardContext` for this step: ``step``, ``data``, ``device``,
        ``models``, ``generator``, ``discriminator`` and ``noise`` filled in; the rest from ``fields``."""
        known = dict(step=self.state.step, data=self.data, device=self.device, models=self.models,
                     generator=self.generator, discriminator=self.discriminator, noise=self.reward_noise)
        return RewardContext(**{**known, **fields})

    def set_reward_weights(self, step: int) -> None:
        """Each reward's ``weight`` and ``reward_weights`` for ``step``: those with a schedule move."""
        if any(bound.schedule for bound in self.rewards):
            for bound in self.rewards:
                bound.weight = bound.weight_at(step)
            self.reward_weights = torch.tensor([r.weight for r in self.rewards], device=self.device)

    def start_rewards(self, samples: torch.Tensor, context: RewardContext, steps: int | None = None) -> PendingRewards:
        """Start the asynchronous rewards (``workers`` > 0) on ``samples`` and return at once; the
        result's ``result(**fields)`` calls the others, with ``context`` completed by ``fields``,
        waits for all, and returns what :meth:`compute_rewards` returns.  A strategy starts them
        as soon as its samples exist, so that slow rewards run while it does other work."""
        return PendingRewards(self, samples, context, steps)

    def compute_rewards(self, samples: torch.Tensor, context: RewardContext, steps: int | None = None) -> torch.Tensor | None:
        """Each configured reward on ``samples``, checked, as columns of an [N, K] tensor.

        With ``steps`` (samples made in ``steps`` steps, such as sequences ``[N, T]``), a reward may
        also return ``[N, steps]``; the result is then ``[N, steps, K]``, a per-sample reward
        repeated for each step.  A reward that raises or returns a bad value stops the run with an
        error naming it, its plugin and the step; with ``run.on_bad_reward = "skip"`` this batch's
        update is skipped instead (``None``), and counted.  All ranks decide together.
        """
        return self.start_rewards(samples, context, steps).result()

    def collect_rewards(self, pending: PendingRewards, context: RewardContext) -> torch.Tensor | None:
        """What :meth:`compute_rewards` returns, for rewards started with :meth:`start_rewards`."""
        samples, steps = pending.samples, pending.steps
        columns, problem = [], None
        for bound in self.rewards:
            value, problem = self.finish_reward(pending.call(bound, context), len(samples), samples.device,
                                                context.step, steps)
            if problem:
                pending.cancel()
                break
            if steps and value.dim() == 1:
                value = value.unsqueeze(1).expand(len(samples), steps)
            columns.append(value if bound.pathwise else value.detach())
        if distributed.any_rank(problem is not None, self.device):
            problem = problem or f"a reward failed on another rank at step {context.step}"
            if self.config.run.on_bad_reward == "skip":
                self.skip_batch(problem)
                return None
            raise RewardError(f"{problem} ([run] on_bad_reward = \"skip\" skips such batches)")
        if not columns:
            return torch.zeros((len(samples), steps) if steps else (len(samples),), device=samples.device).unsqueeze(-1)
        return torch.stack(columns, dim=-1).float()

    def reward_pool(self, bound: BoundReward) -> ThreadPoolExecutor:
        """The worker threads of an asynchronous reward (``workers`` of them), made on first use."""
        if bound.name not in self.reward_pools:
            self.reward_pools[bound.name] = ThreadPoolExecutor(bound.workers, thread_name_prefix=f"reward-{bound.name}")
        return self.reward_pools[bound.name]

    def close(self) -> None:
        """Let the rewards' worker threads go (the engine calls this when a run ends)."""
        for pool in self.reward_pools.values():
            pool.shutdown(wait=True, cancel_futures=True)
        self.reward_pools.clear()

    def skip_batch(self, problem: str) -> None:
        """Count a batch whose update is skipped (``run.on_bad_reward = "skip"``); say why the first
        time, and stop the run once more than ``run.max_skipped_fraction`` of its steps (after ten
        of them) were skipped: a reward that always fails must not pass for a finished run."""
        self.state.skipped_batches += 1
        if self.state.skipped_batches == 1 and self.rank == 0:
            warnings.warn(f"run.on_bad_reward = \"skip\": skipping this batch's update, as every batch where {problem}",
                          stacklevel=2)
        taken = self.state.step + 1
        if taken >= 10 and self.state.skipped_batches > self.config.run.max_skipped_fraction * taken:
            raise RewardError(f"{self.state.skipped_batches} of {taken} batches skipped, more than "
                              f"run.max_skipped_fraction = {self.config.run.max_skipped_fraction}; the latest: {problem}")

    def call_reward(self, bound: BoundReward, samples: torch.Tensor, context: RewardContext,
                    steps: int | None = None) -> tuple[torch.Tensor | None, str | None]:
        """One reward on ``samples``, on this thread (in chunks, if it has a ``chunk_size``): its
        value, or ``None`` and what is wrong with it, naming the reward, its plugin and the step."""
        return self.finish_reward(RewardCall(bound, samples, context, None), len(samples), samples.device,
                                  context.step, steps)

    @staticmethod
    def finish_reward(call: RewardCall, n: int, device: torch.device, step: int,
                      steps: int | None = None) -> tuple[torch.Tensor | None, str | None]:
        """A started reward call's value for the ``n`` samples, or ``None`` and what is wrong with
        it (it raised, or returned something other than a tensor of the right shape on ``device``,
        or NaN or infinite values)."""
        bound = call.bound
        where = f"reward {bound.name!r} (plugin {bound.plugin!r}) at step {step}"
        chunks = []
        for size, value in zip(call.sizes, call.wait()):
            if isinstance(value, Exception):
                return None, f"{where} raised {type(value).__name__}: {value}"
            shapes = [(size,), (size, steps)] if steps else [(size,)]
            if not isinstance(value, torch.Tensor) or tuple(value.shape) not in shapes:
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                called = f" (called on {size} of the {n} samples)" if size != n else ""
                return None, f"{where} returned {shape}{called}; expected a tensor of shape {' or '.join(map(str, shapes))}"
            if value.device != device:
                return None, f"{where} returned a tensor on {value.device}; expected {device}"
            if chunks and value.dim() != chunks[0].dim():
                return None, f"{where} returned {tuple(value.shape)} for one chunk and {tuple(chunks[0].shape)} for another"
            chunks.append(value)
        value = chunks[0] if len(chunks) == 1 else torch.cat(chunks)
        bad = int((~torch.isfinite(value)).sum())
        if bad:
            return None, f"{where} returned NaN or infinite values ({bad} of {value.numel()})"
        return value, None

    def advantages(self, rewards: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """The weighted rewards ``rewards @ weights`` (by default the configured weights) less the
        ``[loss] baseline``, with the statistics of the global batch (per step for ``[N, T, K]``),
        in float64 (:func:`rlgan_core.ops.advantages`)."""
        weights = self.reward_weights if weights is None else weights
        scores = rewards.detach().double() @ weights.double()
        return ops.advantages(scores, self.config.loss.baseline, self.config.loss.eps, global_batch=True)

    def kl_regularised_advantages(self, rewards: torch.Tensor, log_ratio: torch.Tensor, beta: float,
                                  weights: torch.Tensor | None = None) -> torch.Tensor:
        """Advantages for the KL-regularised objective ``E[r] - beta * KL(pi || pi_ref)``, whose
        optimum is ``pi_ref * exp(r / beta) / Z``: the weighted rewards ``rewards @ weights`` (``[N,
        K]``; by default the configured weights) less ``beta * log_ratio`` (``[N]``: each sample's
        ``log pi(x) - log pi_ref(x)``, of its whole sampling path), less their mean over the global
        batch, in float64.  Never divided by their spread: that would change the effective beta as
        the spread shrinks (docs/kl_target.md)."""
        weights = self.reward_weights if weights is None else weights
        scores = rewards.detach().double() @ weights.double() - beta * log_ratio.detach().double()
        return ops.advantages(scores, "mean", global_batch=True)

    def step_output(self, losses: dict, rewards: torch.Tensor | None, started: float, samples: int,
                    diagnostics: dict | None = None) -> StepOutput:
        """A strategy's ``StepOutput``: its losses, the mean of each reward, its wall time, and
        ``diagnostics`` (scalars such as a policy's entropy, logged as ``policy/NAME``)."""
        means = {}
        if rewards is not None:
            means = {r.name: rewards[..., i].detach().mean() for i, r in enumerate(self.rewards)}
        return StepOutput(self.state.step, losses, means, time.perf_counter() - started, samples,
                          {name: value.detach() for name, value in (diagnostics or {}).items()})

    # --- what checkpoints save ----------------------------------------------------------------

    def rng_states(self) -> dict[str, torch.Tensor]:
        states = {"torch": torch.get_rng_state(), "data": self.data_rng.get_state(), "latent": self.latent_rng.get_state()}
        if self.device.type == "cuda":
            states["cuda"] = torch.cuda.get_rng_state(self.device)
        return states

    def set_rng_states(self, states: dict[str, torch.Tensor]) -> None:
        torch.set_rng_state(states["torch"])
        self.data_rng.set_state(states["data"])
        self.latent_rng.set_state(states["latent"])
        if self.device.type == "cuda":
            torch.cuda.set_rng_state(states["cuda"], self.device)
