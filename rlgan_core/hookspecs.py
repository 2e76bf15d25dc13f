"""Every hook a plugin may implement.

Two kinds of hooks:

* registration hooks (``rlgan_register_*``) receive a ``register`` callable and call it once per
  thing the plugin adds; the core owns the registries and their errors;
* lifecycle hooks (train start, step end, evaluation, train end) receive the running
  :class:`rlgan_core.engine.Engine` (its ``config``, ``run_dir``, ``state``, ``stash``, ``rank``,
  ``data``, ``models``, ``strategy`` and ``context``) and let plugins log, save, evaluate and draw.

A hook implementation may accept any subset of the arguments named here, in any order.
"""

import pluggy

hookspec = pluggy.HookspecMarker("rlgan")
hookimpl = pluggy.HookimplMarker("rlgan")


@hookspec
def rlgan_register_models(register):
    """Add named models: generators, discriminators, diffusion models.

    Call ``register(name, factory)`` once per model.  For each model role the strategy uses, the
    engine calls ``factory(data, **options)`` with the run's data source and the options of the
    role's config table (``[generator]``, ``[discriminator]``; every key but ``name``), and
    expects a ``torch.nn.Module``.  A generator has an int attribute ``latent_dim`` and maps
    latents ``[N, latent_dim]`` to samples ``[N, *data.shape]``, or has a method
    ``sample(n, seed)``; a discriminator maps samples to logits ``[N]`` (real is positive).
    """


@hookspec
def rlgan_register_rewards(register):
    """Add named reward functions.

    Call ``register(name, factory)`` once per reward, where ``factory(**options)`` (usually a
    subclass of :class:`rlgan_core.Reward`) receives the options of the config's
    ``[rewards.NAME]`` table (every key but ``weight`` and ``pathwise``) and returns a callable
    ``reward(samples, context) -> Tensor[N]``: one float per generated sample, larger is better.
    ``context`` is a :class:`rlgan_core.RewardContext`.  The reward's ``differentiable``
    attribute says whether gradients may flow from its output back into ``samples``; under a
    sequence strategy, a reward with ``per_token = True`` returns ``Tensor[N, T]`` instead.
    """


@hookspec
def rlgan_register_data(register):
    """Add named data sources.

    Call ``register(name, factory)`` once per data source.  The engine calls
    ``factory(**options)`` with the options of the config's ``[data]`` table (every key but
    ``name``) and expects a :class:`rlgan_core.DataSource`.
    """


@hookspec
def rlgan_register_strategies(register):
    """Add named training strategies: what one step of the loop does.

    Call ``register(name, factory)`` once per strategy.  The engine calls
    ``factory(context, **options)`` with the run's :class:`rlgan_core.TrainingContext` and the
    options of the config's ``[strategy]`` table, and expects a :class:`rlgan_core.Strategy`: its
    ``roles`` say which models to build, its ``step()`` takes one training step and returns a
    :class:`rlgan_core.StepOutput`; its ``phase(step)`` names the phase a step belongs to
    (the engine evaluates at the end of each phase and reports the metrics there as
    ``METRIC_PHASE`` in the summary); its ``sample(n, seed)`` draws the evaluation samples.  The
    built-in ``gan`` strategy is the default.
    """


@hookspec
def rlgan_train_start(engine):
    """Called once before the first step of a run (also of a resumed run).

    ``engine.state.step`` is the step training starts from; ``engine.run_dir`` exists.
    Plugins keep per-run state in ``engine.stash``, a dict.
    """


@hookspec
def rlgan_step_end(engine, output):
    """Called after every optimisation step.

    ``output`` is a :class:`rlgan_core.engine.StepOutput` (step, losses, mean rewards);
    ``engine.state.step`` already counts this step.
    """


@hookspec
def rlgan_evaluate(engine, samples):
    """Called at each evaluation (before the first step and every ``evaluation.every`` steps).

    ``samples`` is a fixed-seed batch of ``evaluation.samples`` generated samples, on the CPU.
    Return a dict of metric names to floats (merged into the run's metrics) or ``None``.
    """


@hookspec
def rlgan_evaluation_end(engine, samples, metrics):
    """Called after each evaluation with the merged ``metrics`` dict; for logging and pictures."""


@hookspec
def rlgan_train_end(engine, summary):
    """Called once after the last step.

    ``summary`` is the dict about to be written to ``RUN_DIR/summary.json``; a plugin may add
    keys to it.
    """
