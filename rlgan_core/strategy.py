"""The strategy interface: what one step of the engine's loop does.

The engine runs the loop; a strategy spends one step of it with what a
:class:`rlgan_core.TrainingContext` holds (models, optimizers, data, random number generators,
rewards).  The built-in strategies (``rlgan_core.builtin.strategies``) are ``gan``, which
alternates discriminator and generator updates, and ``reinforce`` and ``ppo``, which train a
generator as a policy; a plugin registers others through ``rlgan_register_strategies``.
"""

import warnings

import torch

from .errors import ConfigError


class Strategy:
    """Base class of training strategies.

    ``roles`` names the model roles the strategy uses, each mapped to whether it is required.  The
    engine builds a required role from its config table (or the default model of that role), an
    optional one only when the config has its table or a configured reward reads it (a reward's
    ``roles``); a role the strategy does not name is never built.

    Subclasses take the :class:`rlgan_core.TrainingContext` and their config options (the
    ``[strategy]`` table) in ``__init__`` and implement ``step``.  State that must survive a resume
    goes in ``state_dict`` (a dict of tensors, saved with each checkpoint); models added with
    ``context.add_model`` are saved already.
    """

    roles: dict[str, bool] = {"generator": True, "discriminator": True}

    def __init__(self, context):
        self.context = context

    @property
    def engine(self):
        """The older name of ``self.context`` (a strategy used to receive the engine; the context
        has the same ``generator``, ``next_batch()``, ``compute_rewards(...)``, ... it had)."""
        return self.context

    def step(self):
        """Take training step ``context.state.step`` and return its ``StepOutput``."""
        raise NotImplementedError

    def phase(self, step: int) -> str:
        """The name of the phase that step ``step`` (0-based) belongs to; one phase by default."""
        return "train"

    def finished(self) -> bool:
        """Whether the strategy's work is done before ``run.steps`` (a budget of reward calls
        spent, say); checked after every step.  The engine then evaluates and ends the run as a
        finished one, as it would at ``run.steps``.  Never, by default."""
        return False

    def sample(self, n: int, seed: int) -> torch.Tensor:
        """``n`` samples for evaluation and pictures, drawn from ``seed`` alone (never from the
        training generators).  By default the generator's ``sample(n, seed)`` when it has one, or
        else ``generator(latents)`` for ``n`` standard normal latents of its ``latent_dim``."""
        return sample_model(self.context.generator, n, seed, self.context.device)

    def evaluation_metrics(self) -> dict[str, float]:
        """The strategy's own metrics at each evaluation (a VAE's ELBO, say), merged into the run's
        metrics, with every model in eval mode; none by default."""
        return {}

    def state_dict(self) -> dict:
        return {}

    @staticmethod
    def check_kl_weights(beta: float, kl_coef: float) -> None:
        """Check a strategy's two KL options: ``beta``, the weight of the KL-regularised objective
        (optimum ``p_ref * exp(r / beta) / Z``, docs/kl_target.md), and the older ``kl_coef``, a
        penalty beside whitened advantages that targets no fixed distribution (it still runs,
        with a warning).  Both must be >= 0, and at most one set."""
        if beta < 0 or kl_coef < 0:
            raise ValueError(f"beta and kl_coef must be >= 0, got {beta} and {kl_coef}")
        if beta and kl_coef:
            raise ConfigError("[strategy] give beta or kl_coef, not both: beta is the KL weight of the objective "
                              "whose optimum is p_ref * exp(r / beta) / Z; kl_coef, the older penalty, targets none")
        if kl_coef:
            warnings.warn("[strategy] kl_coef adds a KL penalty beside whitened advantages, which targets no fixed "
                          "distribution; beta = B is the KL-regularised objective, optimum p_ref * exp(r / B) / Z "
                          "(docs/kl_target.md)", stacklevel=3)

    def load_state_dict(self, state: dict) -> None:
        pass


def sample_model(generator, n: int, seed: int, device) -> torch.Tensor:
    """``n`` samples of ``generator`` from ``seed`` alone: its ``sample(n, seed)`` when it has one,
    or else ``generator(latents)`` for ``n`` standard normal latents of its ``latent_dim``."""
    if callable(getattr(generator, "sample", None)):
        return generator.sample(n, seed)
    rng = torch.Generator(device).manual_seed(seed)
    return generator(torch.randn(n, generator.latent_dim, generator=rng, device=device))
