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
the policy loss of its ``[batch × length, vocabulary]`` logits (``lstm_policy``:
``rlgan_core.ops.linear_policy_gradient_loss`` on its output layer, which never holds those logits
whole; other generators: ``policy_gradient_loss`` of their ``logits``), with the per-token rewards
minus the ``[loss] baseline`` (per position over the batch) as advantages and ``[loss]
entropy_coef`` as entropy bonus; MLE uses the same loss with advantage 1 (cross-entropy).

Under N processes (``rlgan train --nproc N``, torchrun) ``run.batch_size`` is per process: each
rank generates, rolls out and scores its rows of every global batch, and learns from them; the
baselines, the averaged gradients and the discriminator's batches are those of the global batch,
so N processes with batch B train the model of one process with batch N·B (but for dropout, whose
masks each process draws for itself).
"""

import time

import torch
import torch.nn.functional as F

from rlgan_core import ConfigError, Strategy
from rlgan_core.ops import advantages, policy_gradient_loss


class SeqGAN(Strategy):
    def __init__(self, context, generator_pretrain_epochs: int = 120, discriminator_pretrain_rounds: int = 50,
                 discriminator_rounds: int = 5, discriminator_epochs: int = 3, discriminator_samples: int = 10000,
                 generator_updates: int = 1, policy_lr: float = 0.0, fresh_policy_optimizer: bool = True,
                 grad_clip: float = 5.0):
        super().__init__(context)
        if not hasattr(context.generator, "logits"):
            raise ConfigError("[strategy] 'seqgan' needs a sequence policy generator (with logits(tokens)), such as lstm_policy")
        if discriminator_samples % context.world_size:
            raise ConfigError(f"[strategy] 'seqgan': discriminator_samples = {discriminator_samples} must be a multiple "
                              f"of the number of processes, {context.world_size}")
        self.mle_steps = generator_pretrain_epochs
        self.pretrain_steps = generator_pretrain_epochs + discriminator_pretrain_rounds
        self.discriminator_rounds, self.discriminator_epochs = discriminator_rounds, discriminator_epochs
        self.discriminator_samples, self.generator_updates, self.grad_clip = discriminator_samples, generator_updates, grad_clip
        self.policy_lr, self.fresh_policy_optimizer = policy_lr, fresh_policy_optimizer
        per_token = [bound for bound in context.rewards if _per_step(bound.reward)]
        # with a rollout reward, the other rewards reach the policy through its completions (ORGAN)
        self.objective_rewards = [bound for bound in context.rewards if per_token and bound not in per_token]
        # the rewards that reach the policy directly (weights may follow a schedule: read each step)
        self.policy_mask = torch.tensor(
            [0.0 if bound in self.objective_rewards else 1.0 for bound in context.rewards] or [0.0],
            device=context.device,
        )

    def phase(self, step):
        if step < self.mle_steps:
            return "mle"
        return "discriminator" if step < self.pretrain_steps else "adversarial"

    def step(self):
        context = self.context
        started = time.perf_counter()
        phase = self.phase(context.state.step)
        rewards, samples = None, 0
        if phase == "mle":
            losses = {"mle": self.mle_epoch()}
            samples = len(context.dataset["x"])
        elif phase == "discriminator":
            losses = {"discriminator": self.discriminator_round()}
        else:
            if context.state.step == self.pretrain_steps:
                self._start_policy_optimizer()
            generator_losses = []
            for _ in range(self.generator_updates):
                loss, rewards = self.policy_gradient_update()
                generator_losses.append(loss)
                samples += context.config.run.batch_size
            losses = {"generator": torch.stack(generator_losses).mean()}
            if self.discriminator_rounds:
                losses["discriminator"] = torch.stack([self.discriminator_round() for _ in range(self.discriminator_rounds)]).mean()
        return context.step_output(losses, rewards, started, samples)

    # --- the three kinds of update ---------------------------------------------------------------

    def mle_epoch(self) -> torch.Tensor:
        context, total = self.context, []
        for _ in range(len(context.dataset["x"]) // (context.config.run.batch_size * context.world_size)):
            tokens = context.next_batch()["x"]
            loss = self._policy_loss(tokens, torch.ones(tokens.shape, device=tokens.device), 0.0)
            self._generator_update(loss)
            total.append(loss.detach())
        return torch.stack(total).mean()

    def policy_gradient_update(self):
        context = self.context
        latents = context.sample_latents()
        with torch.no_grad():
            tokens = context.generator(latents)
            logits_real = context.discriminator(tokens)
        reward_context = context.reward_context(
            discriminator_logits=logits_real, latents=latents, batch=context.next_batch(),
            objective=self._objective if self.objective_rewards else None,
        )
        rewards = context.compute_rewards(tokens, reward_context, steps=tokens.shape[1])
        if rewards is None:  # a bad reward, skipped by run.on_bad_reward = "skip"
            return torch.zeros((), device=context.device), None
        # per-token rewards [N, T] less the baseline, taken per position over the global batch
        config = context.config.loss
        scores = (rewards @ (context.reward_weights * self.policy_mask)).double()
        token_advantages = advantages(scores, config.baseline, config.eps, global_batch=True).float()
        loss = self._policy_loss(tokens, token_advantages, context.config.loss.entropy_coef)
        self._generator_update(loss)
        return loss.detach(), rewards

    def discriminator_round(self) -> torch.Tensor:
        context = self.context
        batch_size, n = context.config.run.batch_size, self.discriminator_samples
        with torch.no_grad():  # each rank writes its share of the fakes; every rank then holds all
            fake = context.gather(torch.cat([context.generator(latents) for latents in context.sample_latents(n).split(1000)]))
        real_pool = context.dataset["x"]
        real = real_pool[torch.randint(len(real_pool), (n,), generator=context.data_rng).to(context.device)]
        tokens = torch.cat([real, fake])
        labels = torch.cat([torch.ones(n), torch.zeros(n)]).to(context.device)
        penalty = getattr(context.discriminator, "penalty", None)
        losses = []
        for _ in range(self.discriminator_epochs):
            order = torch.randperm(2 * n, generator=context.data_rng).to(context.device)
            for batch in order.split(batch_size * context.world_size):  # global batches; each rank takes its rows
                share = len(batch) // context.world_size
                if share == 0:  # a last batch smaller than the number of processes
                    continue
                batch = batch[context.rank * share:(context.rank + 1) * share]
                logits = context.trained_discriminator(tokens[batch])
                loss = F.binary_cross_entropy_with_logits(logits, labels[batch])
                context.discriminator_optimizer.zero_grad(set_to_none=True)
                (loss + penalty() if penalty else loss).backward()
                context.discriminator_optimizer.step()
                losses.append(loss.detach())
        return torch.stack(losses).mean()

    # --- helpers ----------------------------------------------------------------------------------

    def _start_policy_optimizer(self):
        """SeqGAN trains the policy with an Adam optimizer of its own, not the pre-training one's."""
        optimizer = self.context.generator_optimizer
        if self.fresh_policy_optimizer:
            optimizer.state.clear()
        if self.policy_lr:
            for group in optimizer.param_groups:
                group["lr"] = self.policy_lr

    def _policy_loss(self, tokens, token_advantages, entropy_coef):
        """The policy-gradient loss of ``tokens`` ``[N, T]``: the generator's own ``policy_loss``
        when it has one (``lstm_policy``: fused with its output layer), else from its ``logits``."""
        generator = self.context.generator
        if hasattr(generator, "policy_loss"):
            return generator.policy_loss(tokens, token_advantages, entropy_coef)
        logits = generator.logits(tokens).flatten(0, 1)
        return policy_gradient_loss(logits, tokens.flatten(), token_advantages.flatten(), entropy_coef=entropy_coef,
                                    inplace=True)

    def _generator_update(self, loss):
        context = self.context
        context.generator_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        context.average_gradients("generator")  # the policy's logits() does not pass through the DDP wrapper
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(context.generator.parameters(), self.grad_clip)
        context.generator_optimizer.step()

    def _objective(self, sequences: torch.Tensor) -> torch.Tensor:
        """ORGAN's O(Y): the weighted sum of the non-rollout rewards on complete sequences."""
        context = self.context
        reward_context = context.reward_context(batch={})
        return sum(bound.weight * bound.reward(sequences, reward_context) for bound in self.objective_rewards)


def _per_step(reward) -> bool:
    """Whether a reward scores every prefix of a sequence (``per_step``, or its older name ``per_token``)."""
    return bool(getattr(reward, "per_step", False) or getattr(reward, "per_token", False))
