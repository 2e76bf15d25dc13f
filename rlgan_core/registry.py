"""Named models, rewards, data sources and strategies, collected from the plugins' registration hooks."""

from dataclasses import dataclass
from typing import Any, Callable

from .errors import PluginError, UnknownNameError


@dataclass(frozen=True)
class Entry:
    name: str
    factory: Callable[..., Any]
    plugin: str


class Registry:
    """One kind of named thing ("model", "reward", "data source", "strategy") and who registered each."""

    def __init__(self, kind: str):
        self.kind = kind
        self.entries: dict[str, Entry] = {}

    def add(self, name: str, factory: Callable[..., Any], plugin: str) -> None:
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {plugin!r} registered a {self.kind} with an invalid name {name!r}")
        if not callable(factory):
            raise PluginError(f"plugin {plugin!r} registered {self.kind} {name!r} with a non-callable factory")
        if name in self.entries:
            first = self.entries[name].plugin
            raise PluginError(
                f"{self.kind} {name!r} is registered twice: by plugin {first!r} and by plugin {plugin!r}"
            )
        self.entries[name] = Entry(name, factory, plugin)

    def get(self, name: str) -> Entry:
        try:
            return self.entries[name]
        except KeyError:
            known = ", ".join(sorted(self.entries)) or "none"
            raise UnknownNameError(
                f"no {self.kind} named {name!r} is registered; available: {known}"
            ) from None

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def __iter__(self):
        return iter(self.entries.values())


@dataclass
class Registries:
    models: Registry
    rewards: Registry
    data: Registry
    strategies: Registry


def collect(pm) -> Registries:
    """Call every registration hook implementation, each with a ``register`` bound to its plugin."""
    registries = Registries(Registry("model"), Registry("reward"), Registry("data source"), Registry("strategy"))
    for hook_name, registry in (
        ("rlgan_register_models", registries.models),
        ("rlgan_register_rewards", registries.rewards),
        ("rlgan_register_data", registries.data),
        ("rlgan_register_strategies", registries.strategies),
    ):
        for impl in getattr(pm.hook, hook_name).get_hookimpls():

            def register(name, factory, _plugin=impl.plugin_name, _registry=registry):
                _registry.add(name, factory, _plugin)

            impl.function(register=register)
    return registries
