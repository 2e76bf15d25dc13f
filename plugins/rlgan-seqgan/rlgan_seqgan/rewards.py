"""Rewards for sequences: SeqGAN's Monte Carlo rollouts scored by the discriminator (mixed
ORGAN-style with any other configured reward), and a token-frequency objective."""

import copy

import torch

from rlgan_core import Reward


class Rollout(Reward):
    """One reward per token: complete each prefix ``rollouts`` times with a delayed copy of the
    generator and average the completions' scores (the last token scores the sequence itself).

    A completion ``Y`` scores ``λ·D(Y) + (1 − λ)·O(Y)`` (ORGAN), where ``D(Y)`` is the
    discriminator's probability that ``Y`` is real, ``λ = discriminator_weight`` and ``O`` is the
    weighted sum of the run's other rewards (``context.objective``).  The rollout policy follows
    the generator slowly: before each call, ``θ_rollout ← update_rate·θ_rollout + (1 − update_rate)·θ``.
    Completions are scored ``chunk`` at a time, without keeping any graph.  Their randomness is
    drawn from ``context.noise``, so that data-parallel runs complete each sample as one process.
    """

    per_step = True

    def __init__(self, rollouts: int = 16, update_rate: float = 0.8, discriminator_weight: float = 1.0, chunk: int = 4096):
        if not isinstance(rollouts, int) or rollouts < 1:
            raise ValueError(f"rollouts must be a positive integer, got {rollouts!r}")
        if not 0 <= update_rate <= 1:
            raise ValueError(f"update_rate must lie in [0, 1], got {update_rate!r}")
        if not 0 <= discriminator_weight <= 1:
            raise ValueError(f"discriminator_weight (λ) must lie in [0, 1], got {discriminator_weight!r}")
        self.rollouts, self.update_rate, self.discriminator_weight, self.chunk = rollouts, update_rate, discriminator_weight, chunk
        self.policy = None
        self._restored = None  # the rollout policy of a checkpoint, applied once the generator is known

    @torch.no_grad()
    def __call__(self, samples, context):
        if samples.dim() != 2 or samples.is_floating_point():
            raise ValueError(f"rollout rewards need token sequences [N, T], got {samples.dtype} {tuple(samples.shape)}")
        if self.discriminator_weight < 1 and context.objective is None:
            raise ValueError("discriminator_weight < 1 mixes in the other rewards, but no other reward is configured")
        self._follow(context.generator)
        n, length = samples.shape
        discriminator = context.discriminator
        was_training = discriminator.training
        discriminator.eval()
        rewards = torch.empty(n, length, device=samples.device)
        noise = context.noise or (lambda rows, *shape: torch.randn(rows, *shape, device=samples.device))
        for t in range(1, length):
            prefixes = samples[:, :t].repeat(self.rollouts, 1)  # row r * n + i: rollout r of sample i
            # each sample's rollout noise comes from its own rows of the run's draw: N processes
            # complete a sample as one process would
            latents = noise(n, self.rollouts, length).transpose(0, 1).reshape(-1, length)
            completions = torch.cat([
                self.policy.complete(prefix, noise)
                for prefix, noise in zip(prefixes.split(self.chunk), latents.split(self.chunk))
            ])
            rewards[:, t - 1] = self._score(completions, discriminator, context).view(self.rollouts, n).mean(0)
        rewards[:, -1] = self._score(samples, discriminator, context)
        discriminator.train(was_training)
        return rewards

    def _score(self, sequences, discriminator, context):
        if self.discriminator_weight == 0:  # ORGAN's pure objective: no discriminator pass needed
            return context.objective(sequences)
        realness = torch.cat([torch.sigmoid(discriminator(part)) for part in sequences.split(self.chunk)])
        if self.discriminator_weight == 1:
            return realness
        return self.discriminator_weight * realness + (1 - self.discriminator_weight) * context.objective(sequences)

    def _follow(self, generator):
        if self.policy is None:
            self.policy = copy.deepcopy(generator).requires_grad_(False)
            if self._restored is None:
                return
            self.policy.load_state_dict(self._restored)
        for mine, theirs in zip(self.policy.parameters(), generator.parameters()):
            mine.lerp_(theirs, 1 - self.update_rate)

    def state_dict(self):
        return {} if self.policy is None else self.policy.state_dict()

    def load_state_dict(self, state):
        self.policy, self._restored = None, state or None


class TokenFrequency(Reward):
    """The share of a sequence's tokens that equal ``token``, an ORGAN-style domain objective."""

    def __init__(self, token: int = 0):
        if not isinstance(token, int) or token < 0:
            raise ValueError(f"token must be a non-negative integer, got {token!r}")
        self.token = token

    def __call__(self, samples, context):
        return (samples == self.token).float().mean(dim=1)
