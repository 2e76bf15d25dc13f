"""Generators read as policies: the one test of whether a generator is one, for the ``reinforce``
and ``ppo`` strategies, ``rlgan_core.is_policy`` and the conformance kit's ``check_policy``."""

import torch


def policy_problem(model) -> str | None:
    """Why ``model`` cannot be trained as a policy (``None`` when it can): it needs a
    ``distribution(outputs)`` method that works for it, as built (``mlp_generator`` has the method
    but is a policy only with ``noise > 0``; it then raises ``TypeError`` saying so)."""
    distribution = getattr(model, "distribution", None)
    if not callable(distribution):
        return "it has no distribution(outputs) method"
    if not isinstance(getattr(model, "latent_dim", None), int):
        return "it has no integer attribute latent_dim"
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    try:
        with torch.no_grad():
            distribution(model(torch.zeros(1, model.latent_dim, device=device)))
    except TypeError as error:
        return str(error)
    return None


def is_policy(model) -> bool:
    """Whether ``model`` is a generator that ``reinforce`` and ``ppo`` can train: it maps latents to
    samples and its ``distribution(outputs)`` gives the distribution those samples are drawn from."""
    return policy_problem(model) is None
