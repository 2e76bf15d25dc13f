"""Evaluation: the data source's own quality metrics of the evaluation samples, the strategy's own
metrics (``Strategy.evaluation_metrics``), and the mean of each configured reward on the samples
(``reward_NAME``; rewards that score each step of a sample are left out), with every model in eval
mode (``Engine.evaluate``).
A reward that fails here leaves its metric out, with a warning; training, not evaluation, decides
whether a failing reward stops the run (``run.on_bad_reward``)."""

import warnings

from ..hookspecs import hookimpl


@hookimpl
def rlgan_evaluate(engine, samples):
    metrics = engine.data.metrics(samples) | getattr(engine.strategy, "evaluation_metrics", dict)()
    context = engine.context
    on_device = samples.to(context.device)
    for bound in context.rewards:
        if getattr(bound.reward, "per_step", False) or getattr(bound.reward, "per_token", False):
            continue
        value, problem = context.call_reward(bound, on_device, context.reward_context())
        if problem:
            warnings.warn(f"evaluation: {problem}; reward_{bound.name} left out", stacklevel=1)
        else:
            metrics[f"reward_{bound.name}"] = float(value.float().mean())
    return metrics
