"""Named models, rewards, data sources and strategies, collected from the plugins' registration hooks."""

from dataclasses import dataclass
from typing import Any, Callable

from .errors import PluginError, UnknownNameError

PMO_TASKS = ("qed", "celecoxib_rediscovery", "troglitazone_rediscovery", "thiothixene_rediscovery",
             "albuterol_similarity", "mestranol_similarity", "isomers_c7h8n2o2", "isomers_c9h10n2o2pf2cl", "median1",
             "median2", "amlodipine_mpo", "fexofenadine_mpo", "osimertinib_mpo", "perindopril_mpo", "ranolazine_mpo",
             "sitagliptin_mpo", "zaleplon_mpo", "deco_hop", "scaffold_hop", "valsartan_smarts")
# What the plugins in this repository's plugins/ folder register, so that a missing name can say
# which one to install (a test keeps this in step with the plugins).
FIRST_PARTY = {
    **dict.fromkeys(("ddpo", "mlp_denoiser"), "rlgan-diffusion"),
    **dict.fromkeys(("seqgan", "lstm_policy", "cnn_text", "oracle", "rollout", "token_frequency"), "rlgan-seqgan"),
    **dict.fromkeys(("reinvent", "prior_sampling", "smiles_prior", "moses", *PMO_TASKS), "rlgan-molecules"),
    "novelty": "rlgan-novelty",
}


@dataclass(frozen=True)
class Entry:
    name: str
    factory: Callable[..., Any]
    plugin: str


class Registry:
    """One kind of named thing ("model", "reward", "data source", "strategy") and who registered each.

    Two plugins may register the same name; using that name is then an error that names both, and
    ``PLUGIN:NAME`` picks one (``PLUGIN`` as ``rlgan plugins`` lists it)."""

    def __init__(self, kind: str, broken=()):
        self.kind = kind
        self.entries: dict[str, list[Entry]] = {}
        self.broken = list(broken)  # plugins that failed to load, for the error of a missing name

    def add(self, name: str, factory: Callable[..., Any], plugin: str) -> None:
        if not isinstance(name, str) or not name or ":" in name:
            raise PluginError(f"plugin {plugin!r} registered a {self.kind} with an invalid name {name!r}")
        if not callable(factory):
            raise PluginError(f"plugin {plugin!r} registered {self.kind} {name!r} with a non-callable factory")
        same = self.entries.setdefault(name, [])
        if any(entry.plugin == plugin for entry in same):
            raise PluginError(f"plugin {plugin!r} registered {self.kind} {name!r} twice")
        same.append(Entry(name, factory, plugin))

    def get(self, name: str) -> Entry:
        plugin, _, short = name.rpartition(":")
        candidates = [e for e in self.entries.get(short, ()) if not plugin or e.plugin == plugin]
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            choices = " or ".join(f"'{e.plugin}:{short}'" for e in candidates)
            owners = " and ".join(repr(e.plugin) for e in candidates)
            raise PluginError(f"{self.kind} {short!r} is registered by plugins {owners}: name one, as {choices}")
        known = ", ".join(sorted(self.entries)) or "none"
        missing = f"no {self.kind} named {name!r} is registered; available: {known}"
        if short in FIRST_PARTY:
            missing += f" ({short!r} comes with the {FIRST_PARTY[short]} plugin: pip install plugins/{FIRST_PARTY[short]})"
        if self.broken:
            missing += "; " + "; ".join(str(broken) for broken in self.broken)
        raise UnknownNameError(missing)

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def __iter__(self):
        return (entry for same in self.entries.values() for entry in same)


@dataclass
class Registries:
    models: Registry
    rewards: Registry
    data: Registry
    strategies: Registry


def collect(pm, broken=()) -> Registries:
    """Call every registration hook implementation, each with a ``register`` bound to its plugin.
    ``broken``: the plugins that failed to load, named when a name is missing."""
    registries = Registries(*(Registry(kind, broken) for kind in ("model", "reward", "data source", "strategy")))
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
