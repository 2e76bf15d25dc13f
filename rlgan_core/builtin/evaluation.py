"""Evaluation: the data source's own quality metrics of the evaluation samples, and the mean of each
configured reward on them (``reward_NAME``; rewards that score each step of a sample are left out)."""

import torch

from ..hookspecs import hookimpl


@hookimpl
def rlgan_evaluate(engine, samples):
    metrics = engine.data.metrics(samples)
    context = engine.context
    on_device = samples.to(context.device)
    with torch.no_grad():
        for bound in context.rewards:
            if not (getattr(bound.reward, "per_step", False) or getattr(bound.reward, "per_token", False)):
                value = bound.reward(on_device, context.reward_context())
                metrics[f"reward_{bound.name}"] = float(value.float().mean())
    return metrics
