"""The training engine: a loop of strategy steps whose losses take in rewards from plugins.

The loop (``Engine.run``) reads top to bottom: a step of the configured strategy (by default
``gan``: a discriminator update, then a generator update in which the configured rewards become
advantages that weight the generator loss), evaluation at set steps and at the end of each of
the strategy's phases, then the plugin hooks.  What a strategy trains with (models, optimizers,
data, random number generators, rewards) lives in its :class:`rlgan_core.TrainingContext`;
logging, checkpoints, evaluation, progress and pictures are plugins (``rlgan_core.builtin``).
"""

import contextlib
import inspect
import json
import time
import types
import typing
from pathlib import Path

import torch

from . import checkpoint, distributed, extension, threads
from .config import DEFAULT_MODELS, MODEL_ROLES, ComponentConfig, Config, to_dict
from .context import BoundReward, State, StepOutput, TrainingContext
from .errors import CheckpointError, ConfigError, RlganError
from .plugins import describe_plugins, get_plugin_manager, registries
from .registry import Entry
from .scoring import CALL_OPTIONS
from .strategy import Strategy

__all__ = ["Engine", "State", "StepOutput", "BoundReward"]


class Engine:
    def __init__(self, config: Config, run_dir: str | Path, pm=None):
        self.config = config
        self.run_dir = Path(run_dir)
        self.pm = pm or get_plugin_manager()
        self.stash: dict = {}
        self.state = State()
        extension.set_backend(config.kernel.backend)
        self.threads = threads.apply(config.run.threads)
        self.device = resolve_device(config.run.device)
        distributed.setup(self.device)
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        # With several processes, only rank 0 logs, evaluates, draws and saves.
        self.hook = self.pm.hook if self.rank == 0 else _SilentHooks()
        torch.manual_seed(config.run.seed)
        found = registries(self.pm)
        data = build(found.data.get(config.data.name), config.data, "data")
        strategy = found.strategies.get(config.strategy.name)
        reward_entries = {name: found.rewards.get(name) for name in config.rewards}
        models = {}
        for role in model_roles(config, strategy, reward_entries):
            component = getattr(config, role) or DEFAULT_MODELS[role]()
            setattr(config, role, component)  # the run's config.json names every model it built
            models[role] = build(found.models.get(component.name), component, role, data)
        rewards = [bind_reward(reward_entries[name], name, rc, models) for name, rc in config.rewards.items()]
        self.context = TrainingContext(config, self.device, data, models, rewards, self.state, self.run_dir)
        self.strategy = build(strategy, config.strategy, "strategy", self.context)
        self.stop_reason: str | None = None

    def request_stop(self, reason: str) -> None:
        """Stop the run once the current step is done: the run ends as if it had been set to this
        many steps, but for the summary file (checkpoint plugins save the step; ``rlgan train``
        asks for this on SIGINT and SIGTERM).  Safe to call from a signal handler."""
        self.stop_reason = reason

    @property
    def data(self):
        return self.context.data

    @property
    def models(self) -> dict[str, torch.nn.Module]:
        return self.context.models

    @property
    def generator(self):
        return self.context.generator

    @property
    def discriminator(self):
        return self.context.discriminator

    # --- the loop ------------------------------------------------------------------------------

    def run(self) -> dict:
        """Train from ``state.step`` to ``run.steps``; return the summary written to summary.json."""
        started = time.perf_counter()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.hook.rlgan_train_start(engine=self)
        if self.state.step == 0:
            self.evaluate()
            self.state.initial_metrics = dict(self.state.metrics)
        while self.state.step < self.config.run.steps and not self.strategy.finished():
            if distributed.any_rank(self.stop_reason is not None, self.device):  # every rank stops at the same step
                self.stop_reason = self.stop_reason or "another process was stopped"
                break
            output = self.train_step()
            self.state.step += 1
            step, done = self.state.step, self.state.step == self.config.run.steps or self.strategy.finished()
            finished_phase = self.strategy.phase(step - 1)
            phase_ended = not done and self.strategy.phase(step) != finished_phase
            if step % self.config.evaluation.every == 0 or done or phase_ended:
                self.evaluate()
            if phase_ended:
                self.state.phase_metrics[finished_phase] = dict(self.state.metrics)
            self.hook.rlgan_step_end(engine=self, output=output)
        self.context.close()
        summary = self.summary(time.perf_counter() - started)
        self.hook.rlgan_train_end(engine=self, summary=summary)
        if self.rank == 0 and self.stop_reason is None:  # summary.json marks a finished run
            checkpoint.write_atomically(self.run_dir / "summary.json", json.dumps(summary, indent=2))
        return summary

    def train_step(self) -> StepOutput:
        """One step of the configured strategy (``[strategy]``; by default ``gan``), with the
        rewards weighted as their schedules say for this step."""
        self.context.set_reward_weights(self.state.step)
        return self.strategy.step()

    # --- the parts the loop uses --------------------------------------------------------------

    @contextlib.contextmanager
    def eval_mode(self):
        """Every model in eval mode (batch norm on its running statistics, spectral norm without its
        power iteration) and no gradients, then back as they were: what evaluation and sampling
        see, so that they never change what training does next."""
        modes = {role: module.training for role, module in self.models.items()}
        for module in self.models.values():
            module.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            for role, module in self.models.items():
                module.train(modes[role])

    def generate(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` samples from a fixed seed (not the training RNGs), through the strategy's
        ``sample``, with every model in eval mode; on the CPU."""
        with self.eval_mode():
            return self.strategy.sample(n, seed).cpu()

    def evaluate(self) -> dict[str, float]:
        """Ask the plugins for metrics of a fixed-seed sample batch; tell them the merged result."""
        if self.rank != 0:
            return {}
        # evaluation must not move the training RNGs, or a resumed run would diverge from an uninterrupted one
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []), self.eval_mode():
            samples = self.generate(self.config.evaluation.samples)
            metrics = {}
            for result in reversed(self.hook.rlgan_evaluate(engine=self, samples=samples)):
                metrics.update(result or {})
            self.state.metrics = metrics
            self.hook.rlgan_evaluation_end(engine=self, samples=samples, metrics=metrics)
        return metrics

    def summary(self, wall_time: float) -> dict:
        return {
            "steps": self.state.step,
            **({"stopped": self.stop_reason} if self.stop_reason else {}),
            "wall_time_s": round(wall_time, 3),
            "device": str(self.device),
            "processes": self.world_size,
            "threads": self.threads,
            "skipped_batches": self.state.skipped_batches,
            "kernel": "fused" if extension.use_fused(self.device) else "fallback",
            **({"started_from": self.context.started_from} if self.context.started_from else {}),
            "config": to_dict(self.config),
            "plugins": self.plugin_versions(),
            "metrics": dict(self.state.metrics),
            **{f"{key}_initial": value for key, value in self.state.initial_metrics.items()},
            **{f"{key}_{phase}": value for phase, metrics in self.state.phase_metrics.items() for key, value in metrics.items()},
            **self.state.metrics,
        }

    # --- checkpoints --------------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        """Every model role, optimizer, random number generator and stateful plugin, and the run's
        progress, as a checkpoint of this step (``rlgan_core.checkpoint``)."""
        context = self.context
        tensors = {}
        for role, module in context.models.items():
            tensors.update({f"{role}.{k}": v for k, v in module.state_dict().items()})
        optimizers = {}
        for role, optimizer in context.optimizers.items():
            optimizers[f"{role}_optimizer"] = _split_optimizer_state(optimizer.state_dict(), f"{role}_optimizer", tensors)
        for name, rng_state in context.rng_states().items():
            tensors[f"rng.{name}"] = rng_state
        tensors["data.order"] = context.data_order
        for prefix, holder in self._stateful_parts():
            tensors.update({f"{prefix}.{k}": v for k, v in holder.state_dict().items()})
        state = {
            "metrics": self.state.metrics,
            "initial_metrics": self.state.initial_metrics,
            "skipped_batches": self.state.skipped_batches,
            "phase_metrics": self.state.phase_metrics,
            "roles": list(context.models),
            "optimizers": optimizers,
            **({"started_from": self.context.started_from} if self.context.started_from else {}),
            "config": to_dict(self.config),
            "plugins": self.plugin_versions(),
        }
        return checkpoint.save(self.run_dir / "checkpoints", self.state.step, tensors, state, self.config.checkpoint.keep)

    def load_checkpoint(self, path: Path) -> None:
        context = self.context
        tensors, state = checkpoint.load(path)
        try:
            for role, module in context.models.items():
                module.load_state_dict(checkpoint.section(tensors, role))
            for role, optimizer in context.optimizers.items():
                prefix = f"{role}_optimizer"
                optimizer.load_state_dict(_join_optimizer_state(state["optimizers"][prefix], prefix, tensors))
            context.set_rng_states({name[len("rng."):]: v for name, v in tensors.items() if name.startswith("rng.")})
            context.data_order = tensors["data.order"]
            for prefix, holder in self._stateful_parts():
                holder.load_state_dict(checkpoint.section(tensors, prefix))
            self.state.step, self.state.metrics = state["step"], state["metrics"]
            self.state.initial_metrics, self.state.skipped_batches = state["initial_metrics"], state["skipped_batches"]
            self.state.phase_metrics = state["phase_metrics"]
            self.context.started_from = state.get("started_from")  # a resumed fine-tune still says what it started from
        except (KeyError, RuntimeError, ValueError) as error:
            raise CheckpointError(f"{path}: does not match this run's models or config ({error})") from None

    def plugin_versions(self) -> dict[str, str | None]:
        """Each loaded plugin's distribution version (``None`` for built-ins)."""
        return {entry["name"]: entry["version"] for entry in describe_plugins(self.pm) if "broken" not in entry}

    def _stateful_parts(self):
        """The strategy and the rewards that keep state across steps, with their checkpoint prefixes."""
        parts = [("strategy", self.strategy)]
        parts += [(f"reward.{r.name}", r.reward) for r in self.context.rewards if hasattr(r.reward, "state_dict")]
        return parts


# --- building a run from a config ----------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"run.device: unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"run.device: {name!r} asked for, but this PyTorch sees no CUDA device")
    return device


def build(entry: Entry, component: ComponentConfig, section: str, *args):
    """Call a registered factory with the config's options; unknown options are config errors."""
    _check_options(entry.factory, component.options, f"[{section}] ({entry.name!r} from plugin {entry.plugin!r})", len(args))
    try:
        return entry.factory(*args, **component.options)
    except RlganError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"[{section}] {entry.name!r} (plugin {entry.plugin!r}): {error}") from error
    except Exception as error:  # a missing file, a broken dependency: the plugin's own failure, named
        raise ConfigError(f"[{section}] {entry.name!r} (plugin {entry.plugin!r}): {type(error).__name__}: {error}") from error


def model_roles(config: Config, strategy: Entry, rewards: dict[str, Entry]) -> list[str]:
    """The model roles to build: those the strategy requires, and its optional ones that the config
    gives a table or a reward reads."""
    declared = getattr(strategy.factory, "roles", Strategy.roles)
    where = f"strategy {strategy.name!r} (plugin {strategy.plugin!r})"
    read = {}
    for name, entry in rewards.items():
        for role in getattr(entry.factory, "roles", ()):
            if role not in declared:
                raise ConfigError(f"[rewards.{name}] reads the {role} model, which {where} does not use")
            read[role] = name
    for role in MODEL_ROLES:
        if getattr(config, role) is not None and role not in declared:
            raise ConfigError(f"[{role}]: {where} uses no {role} (its model roles: {', '.join(declared)})")
    roles = [role for role, required in declared.items() if required or role in read or getattr(config, role, None)]
    for role in roles:
        if role not in DEFAULT_MODELS:
            raise ConfigError(f"{where} asks for a model role {role!r}; a config gives only {', '.join(MODEL_ROLES)}")
    return roles


def bind_reward(entry: Entry, name: str, reward_config, models: dict) -> BoundReward:
    where = f"[rewards.{name}]"
    options, calls = call_options(entry.factory, reward_config.options, where)
    reward = build(entry, ComponentConfig(name, options), f"rewards.{name}")
    missing = [role for role in getattr(reward, "roles", ()) if role not in models]
    if missing:
        raise ConfigError(f"{where} reads the {missing[0]} model, which this run does not have")
    if reward_config.pathwise and not getattr(reward, "differentiable", False):
        raise ConfigError(f"{where} pathwise = true, but reward {name!r} (plugin {entry.plugin!r}) is not differentiable")
    if calls.get("workers"):
        why = ("pathwise = true needs its gradient" if reward_config.pathwise else
               f"it reads the {reward.roles[0]} model, which trains meanwhile" if getattr(reward, "roles", ()) else
               "it scores every step of a sample" if getattr(reward, "per_step", False) or getattr(reward, "per_token", False)
               else "")
        if why:
            raise ConfigError(f"{where} {why}: it runs on the training thread; drop workers")
    weight = reward_config.weight
    schedule = tuple((int(step), float(value)) for step, value in weight) if isinstance(weight, list) else ()
    bound = BoundReward(name, entry.plugin, reward, float(weight) if not schedule else 0.0, reward_config.pathwise,
                        schedule, **calls)
    bound.weight = bound.weight_at(0)
    return bound


def call_options(factory, options: dict, where: str) -> tuple[dict, dict]:
    """Split a reward table's options into the plugin's and the engine's (``chunk_size``,
    ``workers``: :mod:`rlgan_core.scoring`); a plugin that takes an option of that name keeps it."""
    try:
        accepted = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        accepted = {}
    options, calls = dict(options), {}
    for key in CALL_OPTIONS:
        if key in options and key not in accepted:
            value = options.pop(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{where} {key}: expected an integer >= 0, got {value!r}")
            calls[key] = value
    return options, calls


def _check_options(factory, options: dict, where: str, positional: int) -> None:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    parameters = list(signature.parameters.values())[positional:]
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return
    accepted = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in options:
        if key not in accepted:
            raise ConfigError(f"{where}: unknown option {key!r} (accepted: {', '.join(accepted) or 'none'})")
    try:
        hints = typing.get_type_hints(factory.__init__ if inspect.isclass(factory) else factory)
    except Exception:  # annotations that do not resolve: nothing to check against
        return
    for key, value in options.items():
        if key in hints and not _fits(value, hints[key]):
            raise ConfigError(f"{where}: option {key!r} must be {_describe(hints[key])}, got {value!r}")


def _fits(value, annotation) -> bool:
    """Whether a config value fits a factory parameter's annotation; only the types a TOML value
    can have are checked (anything else fits)."""
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation in (str, bool):
        return isinstance(value, annotation)
    if origin in (list, tuple) and len(arguments) == 1 or origin is tuple and arguments[-1:] == (Ellipsis,):
        return isinstance(value, (list, tuple)) and all(_fits(item, arguments[0]) for item in value)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, argument) for argument in arguments)
    if annotation is type(None):
        return value is None
    return True


def _describe(annotation) -> str:
    if annotation in (int, float, str, bool):
        return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[annotation]
    return str(annotation).replace("typing.", "")


def _split_optimizer_state(state_dict: dict, prefix: str, tensors: dict) -> dict:
    """Move an optimizer state's tensors into ``tensors``; return the JSON-safe rest."""
    rest = {"param_groups": state_dict["param_groups"], "state": {}}
    for index, values in state_dict["state"].items():
        rest["state"][str(index)] = {}
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.{index}.{key}"] = value
            else:
                rest["state"][str(index)][key] = value
    return rest


def _join_optimizer_state(rest: dict, prefix: str, tensors: dict) -> dict:
    state = {}
    for index, values in rest["state"].items():
        state[int(index)] = dict(values)
    for name, value in tensors.items():
        if name.startswith(prefix + "."):
            index, key = name[len(prefix) + 1:].split(".", 1)
            state.setdefault(int(index), {})[key] = value
    return {"param_groups": rest["param_groups"], "state": state}


class _SilentHooks:
    """Stands in for ``pm.hook`` on ranks other than 0: every hook call does nothing."""

    def __getattr__(self, name):
        return lambda **kwargs: []
