"""Run configuration: TOML files validated against dataclasses, with errors that say where.

Tables with a fixed schema are dataclasses below.  The ``[data]``, ``[generator]``,
``[discriminator]`` and ``[rewards.NAME]`` tables also carry the options of the plugin they
name; those are checked against the plugin factory's signature when the run is built.  The model
tables are optional: the engine builds the model roles the strategy (and the rewards) need, from
their table or, for a required role without one, from ``DEFAULT_MODELS``.
"""

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError


@dataclass
class RunConfig:
    name: str = "digits"
    seed: int = 0
    device: str = "auto"
    steps: int = 5000
    batch_size: int = 64  # per process
    on_bad_reward: Literal["error", "skip"] = "error"
    max_skipped_fraction: float = 0.1  # with "skip": the run stops once more of its batches were skipped
    threads: int = 0  # CPU threads of PyTorch's operators; 0: free cores ÷ training processes here (rlgan_core.threads)


@dataclass
class ComponentConfig:
    """A plugin chosen by name, with the options passed to its factory."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimizerConfig:
    """Adam for each trained model role: ``ROLE_lr`` and the shared ``betas``."""

    generator_lr: float = 2e-4
    discriminator_lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    discriminator_steps: int = 1

    def lr(self, role: str) -> float:
        try:
            return getattr(self, f"{role}_lr")
        except AttributeError:
            raise ConfigError(f"[optimizer]: no learning rate for the model role {role!r}") from None


@dataclass
class LossConfig:
    """How rewards enter the generator loss (see ``rlgan_core.ops.reward_weighted_gan_loss``)."""

    baseline: Literal["none", "mean", "whiten"] = "whiten"
    temperature: float = 0.5
    eps: float = 1e-8
    entropy_coef: float = 0.0  # entropy bonus of policy-gradient strategies (rlgan_core.ops.policy_gradient_loss)


@dataclass
class RewardConfig:
    """A ``[rewards.NAME]`` table: ``weight`` (a number, or a schedule ``[[step, weight], ...]``),
    ``pathwise``, and the plugin's options (with the engine's ``chunk_size`` and ``workers``,
    :mod:`rlgan_core.scoring`)."""

    weight: float | list[list[float]] = 1.0
    pathwise: bool = False
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvaluationConfig:
    every: int = 1000
    samples: int = 1000


@dataclass
class CheckpointConfig:
    every: int = 1000
    keep: int = 3


@dataclass
class LoggingConfig:
    every: int = 10
    progress: bool = True
    tensorboard: bool = True


@dataclass
class KernelConfig:
    backend: Literal["auto", "fused", "fallback"] = "auto"


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    # the digits recipe that measured best (docs/results.md): R1 on the discriminator, and the
    # generator's weight average for sampling; a [strategy] table replaces it whole
    strategy: ComponentConfig = field(default_factory=lambda: ComponentConfig("gan", {"r1": 1.0, "ema_decay": 0.999}))
    data: ComponentConfig = field(default_factory=lambda: ComponentConfig("digits", {"split": "train"}))
    generator: ComponentConfig | None = None  # None: not in the config (see DEFAULT_MODELS)
    discriminator: ComponentConfig | None = None
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    rewards: dict[str, RewardConfig] = field(default_factory=lambda: {"realism": RewardConfig()})
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    kernel: KernelConfig = field(default_factory=KernelConfig)


MODEL_ROLES = ("generator", "discriminator")  # the roles a config may give a table

# The model of a role a strategy requires when the config has no table for it.
DEFAULT_MODELS = {
    "generator": lambda: ComponentConfig("mlp_generator", {"latent_dim": 100, "hidden": [256, 512]}),
    "discriminator": lambda: ComponentConfig("mlp_discriminator", {"hidden": [512, 256]}),
}


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate a TOML config; ``None`` gives the defaults (the digits run)."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    return parse_config(raw, source=str(path))


def parse_config(raw: dict, source: str = "<config>") -> Config:
    """Validate a config given as a dict (as read from TOML)."""
    try:
        return _build(Config, raw, "")
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def to_dict(config: Config) -> dict:
    """The config as plain data, in the same layout as the TOML file."""
    def plain(value):
        if isinstance(value, ComponentConfig):
            return {"name": value.name, **value.options}
        if isinstance(value, RewardConfig):
            return {"weight": value.weight, "pathwise": value.pathwise, **value.options}
        if dataclasses.is_dataclass(value):
            fields = ((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
            return {name: plain(item) for name, item in fields if item is not None}
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        return value

    return plain(config)


def _build(cls, raw: Any, where: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a table, got {type(raw).__name__}")
    if cls is ComponentConfig:
        raw = dict(raw)
        if "name" not in raw:
            raise ConfigError(f"{where}: missing key 'name'")
        name = _check(str, raw.pop("name"), _key(where, "name"))
        return ComponentConfig(name, raw)
    if cls is RewardConfig:
        raw = dict(raw)
        weight = _weight(raw.pop("weight", 1.0), _key(where, "weight"))
        pathwise = _check(bool, raw.pop("pathwise", False), _key(where, "pathwise"))
        return RewardConfig(weight, pathwise, raw)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"{_key(where, unknown[0])}: unknown key (expected one of: {', '.join(sorted(known))})"
        )
    values = {key: _check(hints[key], value, _key(where, key)) for key, value in raw.items()}
    return cls(**values)


def _weight(value, where: str):
    """A reward's weight: a number, or a schedule of ``[step, weight]`` points with rising steps."""
    if not isinstance(value, list):
        return _check(float, value, where)
    if not value:
        raise ConfigError(f"{where}: a weight schedule needs at least one [step, weight] point")
    points = []
    for i, point in enumerate(value):
        if not (isinstance(point, list) and len(point) == 2):
            raise ConfigError(f"{where}[{i}]: expected a [step, weight] pair, got {point!r}")
        step = point[0]
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ConfigError(f"{where}[{i}]: the step must be an integer >= 0, got {step!r}")
        if points and step <= points[-1][0]:
            raise ConfigError(f"{where}[{i}]: the steps must rise, got {step} after {points[-1][0]}")
        points.append([step, _check(float, point[1], f"{where}[{i}]")])
    return points


def _check(hint, value, where: str):
    """Validate ``value`` against the type ``hint``; return it converted where lossless."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{where}: must be one of {', '.join(map(repr, choices))}, got {value!r}")
        return value
    if origin is dict:
        _, item_hint = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {type(value).__name__}")
        return {key: _check(item_hint, item, _key(where, key)) for key, item in value.items()}
    if origin is list:
        (item_hint,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected an array, got {type(value).__name__}")
        return [_check(item_hint, item, f"{where}[{i}]") for i, item in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        options = [option for option in typing.get_args(hint) if option is not type(None)]
        if len(options) != 1:
            raise TypeError(f"unsupported config type {hint}")
        return None if value is None else _check(options[0], value, where)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool) or not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {type(value).__name__} {value!r}")
    if where.rsplit(".", 1)[-1] in POSITIVE and value <= 0:
        raise ConfigError(f"{where}: must be positive, got {value!r}")
    if where.rsplit(".", 1)[-1] in NON_NEGATIVE and value < 0:
        raise ConfigError(f"{where}: must be 0 or more, got {value!r}")
    return value


POSITIVE = {"steps", "batch_size", "every", "samples", "keep", "discriminator_steps", "generator_lr",
            "discriminator_lr", "eps"}
NON_NEGATIVE = {"threads"}


def _key(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
