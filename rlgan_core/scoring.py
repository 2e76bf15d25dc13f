"""Calling the configured rewards: their weights over the run, and their calls in chunks, in worker
threads or through futures, so that a slow black-box reward need not hold the step up.

A ``[rewards.NAME]`` table may give, besides the plugin's own options:

* ``weight``: a number, or a schedule over steps, ``[[step, weight], ...]``: linear between the
  points, flat before the first and after the last;
* ``chunk_size``: score the batch in calls of at most this many samples (a service with a batch
  limit, a model that does not fit the whole batch);
* ``workers``: call the reward in this many threads; the engine then starts it on the step's
  samples as early as the strategy allows (``gan``: before the discriminator's update) and waits
  for it only when the rewards are needed.

A reward may also return a future (any object with ``result()``, such as a
``concurrent.futures.Future``) instead of a tensor; the engine waits for it the same way.
"""

import bisect
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from .reward import RewardContext

CALL_OPTIONS = ("chunk_size", "workers")  # engine keys of a [rewards.NAME] table, unless the plugin takes them


@dataclass
class BoundReward:
    """A configured reward: the callable, its weight at the current step, whether its gradient is
    used, its origin, and how it is called.  ``schedule``: the ``(step, weight)`` points of a weight
    schedule (empty: ``weight`` is constant); ``chunk_size`` (0: the whole batch in one call) and
    ``workers`` (0: called on the training thread) as in the ``[rewards.NAME]`` table."""

    name: str
    plugin: str
    reward: object
    weight: float
    pathwise: bool
    schedule: tuple[tuple[int, float], ...] = ()
    chunk_size: int = 0
    workers: int = 0

    def weight_at(self, step: int) -> float:
        """The weight at ``step``: ``weight`` without a schedule, else the schedule's value there."""
        if not self.schedule:
            return self.weight
        steps = [point for point, _ in self.schedule]
        i = bisect.bisect_right(steps, step)
        if i == 0:
            return self.schedule[0][1]
        if i == len(steps):
            return self.schedule[-1][1]
        (s0, w0), (s1, w1) = self.schedule[i - 1], self.schedule[i]
        return w0 + (w1 - w0) * (step - s0) / (s1 - s0)


def chunk_context(context: RewardContext, start: int, stop: int, n: int) -> RewardContext:
    """``context`` for samples ``start:stop`` of ``n``: its per-sample fields (the discriminator's
    logits, the latents) cut to those rows."""
    if start == 0 and stop == n:
        return context
    cut = {key: getattr(context, key)[start:stop] for key in ("discriminator_logits", "latents")
           if isinstance(getattr(context, key), torch.Tensor) and len(getattr(context, key)) == n}
    return dataclasses.replace(context, **cut)


def is_future(value) -> bool:
    """Whether a reward returned a future of its values (anything with ``result()``) to wait for."""
    return not isinstance(value, (torch.Tensor, Exception)) and callable(getattr(value, "result", None))


class RewardCall:
    """One reward's calls on one batch, started: each chunk's value, future or exception."""

    def __init__(self, bound: BoundReward, samples: torch.Tensor, context: RewardContext,
                 pool: ThreadPoolExecutor | None):
        n, size = len(samples), bound.chunk_size or len(samples) or 1
        self.bound, self.sizes, self.outcomes = bound, [], []
        for start in range(0, n, size) or [0]:  # an empty batch: one call, on no samples
            stop = min(start + size, n)
            chunk, chunk_ctx = samples[start:stop], chunk_context(context, start, stop, n)
            self.sizes.append(stop - start)
            if pool is not None:
                self.outcomes.append(pool.submit(bound.reward, chunk, chunk_ctx))
                continue
            try:
                self.outcomes.append(bound.reward(chunk, chunk_ctx))
            except Exception as error:
                self.outcomes.append(error)

    def cancel(self) -> None:
        for outcome in self.outcomes:
            if is_future(outcome) and hasattr(outcome, "cancel"):
                outcome.cancel()

    def wait(self) -> list:
        """Each chunk's value (a tensor, or whatever the reward returned) or exception; futures are
        waited for."""
        values = []
        for outcome in self.outcomes:
            if is_future(outcome):
                try:
                    outcome = outcome.result()
                except Exception as error:
                    outcome = error
            values.append(outcome)
        return values


class PendingRewards:
    """The configured rewards on one batch, being computed (``TrainingContext.start_rewards``).

    The asynchronous ones (``workers`` > 0) are running already; ``result(**fields)`` calls the
    others with the reward context completed by ``fields`` (such as the discriminator's logits,
    known only later), waits for everything, checks it and returns what ``compute_rewards``
    returns."""

    def __init__(self, training, samples: torch.Tensor, context: RewardContext, steps: int | None):
        self.training, self.samples, self.context, self.steps = training, samples, context, steps
        self.started = {bound.name: RewardCall(bound, samples.detach(), context, training.reward_pool(bound))
                        for bound in training.rewards if bound.workers}

    def result(self, **fields) -> torch.Tensor | None:
        context = dataclasses.replace(self.context, **fields) if fields else self.context
        return self.training.collect_rewards(self, context)

    def call(self, bound: BoundReward, context: RewardContext) -> RewardCall:
        """``bound``'s call on this batch: the one started already, or a new one on this thread (a
        pathwise reward gets the samples with their gradient; the others, samples without one)."""
        if bound.name in self.started:
            return self.started.pop(bound.name)
        return RewardCall(bound, self.samples if bound.pathwise else self.samples.detach(), context, None)

    def cancel(self) -> None:
        for call in self.started.values():
            call.cancel()
