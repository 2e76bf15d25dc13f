"""Exceptions that the CLI shows as one clear line instead of a traceback."""


class RlganError(Exception):
    """Base class of every error rlgan raises on purpose."""


class PluginError(RlganError):
    """A plugin is broken: an unknown hook, a name registered twice, a bad value returned."""


class UnknownNameError(RlganError):
    """A config names a model, reward or data source that no installed plugin registered."""


class ConfigError(RlganError):
    """A config file is invalid; the message says where."""


class RewardError(RlganError):
    """A reward returned something unusable; the message names the reward and its plugin."""


class CheckpointError(RlganError):
    """A checkpoint is missing, truncated, tampered with or incompatible."""


class KernelError(RlganError):
    """The fused kernels were asked for but cannot be used."""
