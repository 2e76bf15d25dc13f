"""rlgan: train generative models with reinforcement-learning signals, composed from plugins."""

from .builtin.logs import read_metrics
from .context import StepOutput, TrainingContext
from .critic import RewardCritic, importance_resample
from .datasource import DataSource
from .errors import ConfigError, RewardError
from .hookspecs import hookimpl
from .policy import is_policy
from .reward import Reward, RewardContext
from .strategy import Strategy

__all__ = ["ConfigError", "DataSource", "Reward", "RewardContext", "RewardCritic", "RewardError", "StepOutput", "Strategy",
           "TrainingContext", "hookimpl", "importance_resample", "is_policy", "read_metrics"]
__version__ = "0.1.0"
