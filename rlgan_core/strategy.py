"""The strategy interface: what one step of the engine's loop does.

The engine owns the models, optimizers, data, rewards and the loop; a strategy spends one step
of it.  The built-in ``gan`` strategy (``rlgan_core.builtin.strategies``) alternates
discriminator and generator updates; a plugin can register others (such as a schedule of
pre-training and adversarial phases for discrete generators) through
``rlgan_register_strategies``.
"""


class Strategy:
    """Base class of training strategies.

    Subclasses take the engine and their config options (the ``[strategy]`` table) in
    ``__init__`` and implement ``step``.  State that must survive a resume goes in
    ``state_dict`` (a dict of tensors, saved with each checkpoint).
    """

    def __init__(self, engine):
        self.engine = engine

    def step(self):
        """Take training step ``engine.state.step`` and return its ``StepOutput``."""
        raise NotImplementedError

    def phase(self, step: int) -> str:
        """The name of the phase that step ``step`` (0-based) belongs to; one phase by default."""
        return "train"

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
