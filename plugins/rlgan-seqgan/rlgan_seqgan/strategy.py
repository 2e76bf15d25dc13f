"""The ``seqgan`` strategy: MLE pre-training, discriminator pre-training, then adversarial
epochs in which the generator is a policy trained by REINFORCE on per-token rewards.

One engine step is one epoch of the schedule:

* ``mle``: ``generator_pretrain_epochs`` epochs of maximum likelihood on the real sequences;
* ``discriminator``: ``discriminator_pretrain_rounds`` rounds of discriminator training;
* ``adversarial``: every remaining step (up to ``run.steps``): ``generator_updates``
  policy-gradient updates, then ``discriminator_rounds`` rounds of discriminator training.

Policy-gradient updates use the learning rate ``policy_lr`` (0: the optimizer's
``generator_lr``) and, as in SeqGAN, start from fresh Adam moments (``fresh_policy_optimizer``).
A discriminator round draws ``discriminator_samples`` fresh generated sequences and as many real
ones and trains ``discriminator_epochs`` epochs on them.  The generator's policy-gradient loss is
``rlgan_core.ops.policy_gradient_loss`` over its ``[batch × length, vocabulary]`` logits, with the
per-token rewards minus the ``[loss] baseline`` (per position over the batch) as advantages and
``[loss] entropy_coef`` as entropy bonus; MLE uses the same op with advantage 1 (cross-entropy).
"""

import time

import torch
import torch.nn.functional as F

from rlgan_core import RewardContext, Strategy
from rlgan_core.errors import ConfigError
from rlgan_core.ops import policy_gradient_loss


class SeqGAN(Strategy):
    def __init__(self, engine, generator_pretrain_epochs: int = 120, discriminator_pretrain_rounds: int = 50,
                 discriminator_rounds: int = 5, discriminator_epochs: int = 3, discriminator_samples: int = 10000,
                 generator_updates: int = 1, policy_lr: float = 0.0, fresh_policy_optimizer: bool = True,
                 grad_clip: float = 5.0):
        super().__init__(engine)
        if not hasattr(engine.generator, "logits"):
            raise ConfigError("[strategy] 'seqgan' needs a sequence policy generator (with logits(tokens)), such as lstm_policy")
        if engine.world_size != 1:
            raise ConfigError("[strategy] 'seqgan' runs in one process")
        self.mle_steps = generator_pretrain_epochs
        self.pretrain_steps = generator_pretrain_epochs + discriminator_pretrain_rounds
        self.discriminator_rounds, self.discriminator_epochs = discriminator_rounds, discriminator_epochs
        self.discriminator_samples, self.generator_updates, self.grad_clip = discriminator_samples, generator_updates, grad_clip
        self.policy_lr, self.fresh_policy_optimizer = policy_lr, fresh_policy_optimizer
        per_token = [bound for bound in engine.rewards if getattr(bound.reward, "per_token", False)]
        # with a rollout reward, the other rewards reach the policy through its completions (ORGAN)
        self.objective_rewards = [bound for bound in engine.rewards if per_token and bound not in per_token]
        self.policy_weights = torch.tensor(
            [0.0 if bound in self.objective_rewards else bound.weight for bound in engine.rewards] or [0.0],
            device=engine.device,
        )

    def phase(self, step):
        if step < self.mle_steps:
            return "mle"
        return "discriminator" if step < self.pretrain_steps else "adversarial"

    def step(self):
        engine = self.engine
        started = time.perf_counter()
        phase = self.phase(engine.state.step)
        rewards, samples = None, 0
        if phase == "mle":
            losses = {"mle": self.mle_epoch()}
            samples = len(engine.dataset["x"])
        elif phase == "discriminator":
            losses = {"discriminator": self.discriminator_round()}
        else:
            if engine.state.step == self.pretrain_steps:
                self._start_policy_optimizer()
            generator_losses = []
            for _ in range(self.generator_updates):
                loss, rewards = self.policy_gradient_update()
                generator_losses.append(loss)
                samples += engine.config.run.batch_size
            losses = {"generator": torch.stack(generator_losses).mean()}
            if self.discriminator_rounds:
                losses["discriminator"] = torch.stack([self.discriminator_round() for _ in range(self.discriminator_rounds)]).mean()
        return engine.step_output(losses, rewards, started, samples)

    # --- the three kinds of update ---------------------------------------------------------------

    def mle_epoch(self) -> torch.Tensor:
        engine, total = self.engine, []
        for _ in range(len(engine.dataset["x"]) // engine.config.run.batch_size):
            tokens = engine.next_batch()["x"]
            logits = engine.generator.logits(tokens).flatten(0, 1)
            loss = policy_gradient_loss(logits, tokens.flatten(), torch.ones(logits.shape[0], device=logits.device), inplace=True)
            self._generator_update(loss)
            total.append(loss.detach())
        return torch.stack(total).mean()

    def policy_gradient_update(self):
        engine = self.engine
        latents = engine.sample_latents()
        with torch.no_grad():
            tokens = engine.generator(latents)
            logits_real = engine.discriminator(tokens)
        context = RewardContext(
            engine.state.step, engine.generator, engine.discriminator, logits_real, latents, engine.next_batch(),
            engine.data, engine.device, objective=self._objective if self.objective_rewards else None,
        )
        rewards = engine.compute_rewards(tokens, context, per_token=True)
        if rewards is None:  # a bad reward, skipped by run.on_bad_reward = "skip"
            return torch.zeros((), device=engine.device), None
        advantages = self._advantages(rewards @ self.policy_weights)
        logits = engine.generator.logits(tokens).flatten(0, 1)
        loss = policy_gradient_loss(
            logits, tokens.flatten(), advantages.flatten(), entropy_coef=engine.config.loss.entropy_coef, inplace=True
        )
        self._generator_update(loss)
        return loss.detach(), rewards

    def discriminator_round(self) -> torch.Tensor:
        engine = self.engine
        batch_size, n = engine.config.run.batch_size, self.discriminator_samples
        with torch.no_grad():
            fake = torch.cat([engine.generator(latents) for latents in engine.sample_latents(n).split(1000)])
        real_pool = engine.dataset["x"]
        real = real_pool[torch.randint(len(real_pool), (n,), generator=engine.data_rng).to(engine.device)]
        tokens = torch.cat([real, fake])
        labels = torch.cat([torch.ones(n), torch.zeros(n)]).to(engine.device)
        penalty = getattr(engine.discriminator, "penalty", None)
        losses = []
        for _ in range(self.discriminator_epochs):
            order = torch.randperm(2 * n, generator=engine.data_rng).to(engine.device)
            for batch in order.split(batch_size):
                logits = engine.discriminator(tokens[batch])
                loss = F.binary_cross_entropy_with_logits(logits, labels[batch])
                engine.discriminator_optimizer.zero_grad(set_to_none=True)
                (loss + penalty() if penalty else loss).backward()
                engine.discriminator_optimizer.step()
                losses.append(loss.detach())
        return torch.stack(losses).mean()

    # --- helpers ----------------------------------------------------------------------------------

    def _start_policy_optimizer(self):
        """SeqGAN trains the policy with an Adam optimizer of its own, not the pre-training one's."""
        optimizer = self.engine.generator_optimizer
        if self.fresh_policy_optimizer:
            optimizer.state.clear()
        if self.policy_lr:
            for group in optimizer.param_groups:
                group["lr"] = self.policy_lr

    def _generator_update(self, loss):
        engine = self.engine
        engine.generator_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(engine.generator.parameters(), self.grad_clip)
        engine.generator_optimizer.step()

    def _advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        """Per-token rewards ``[N, T]`` less the configured baseline, taken per position over the batch."""
        config = self.engine.config.loss
        if config.baseline == "none":
            return rewards
        centred = rewards - rewards.mean(dim=0, keepdim=True)
        if config.baseline == "mean":
            return centred
        return centred / (rewards.std(dim=0, correction=0, keepdim=True) + config.eps)

    def _objective(self, sequences: torch.Tensor) -> torch.Tensor:
        """ORGAN's O(Y): the weighted sum of the non-rollout rewards on complete sequences."""
        engine = self.engine
        context = RewardContext(
            engine.state.step, engine.generator, engine.discriminator, None, None, {}, engine.data, engine.device
        )
        return sum(bound.weight * bound.reward(sequences, context) for bound in self.objective_rewards)
