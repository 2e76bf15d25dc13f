"""rlgan: train generative models with reinforcement-learning signals, composed from plugins."""

from .datasource import DataSource
from .hookspecs import hookimpl
from .reward import Reward, RewardContext
from .strategy import Strategy

__all__ = ["DataSource", "Reward", "RewardContext", "Strategy", "hookimpl"]
__version__ = "0.1.0"
