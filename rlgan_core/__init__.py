"""rlgan: train generative models with reinforcement-learning signals, composed from plugins."""

from .datasource import DataSource
from .hookspecs import hookimpl
from .reward import Reward, RewardContext

__all__ = ["DataSource", "Reward", "RewardContext", "hookimpl"]
__version__ = "0.1.0"
