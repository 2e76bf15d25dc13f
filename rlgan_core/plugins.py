"""The plugin manager: built-in plugins and installed ones, registered the same way."""

import importlib
import os
from dataclasses import dataclass
from functools import cache
from importlib import metadata

import pluggy

from . import hookspecs
from .errors import PluginError
from .registry import Registries, collect

ENTRY_POINT_GROUP = "rlgan"

DEFAULT_PLUGINS = (
    "rlgan_core.builtin.strategies",
    "rlgan_core.builtin.latent",
    "rlgan_core.builtin.vae",
    "rlgan_core.builtin.models",
    "rlgan_core.builtin.data",
    "rlgan_core.builtin.rewards",
    "rlgan_core.builtin.evaluation",
    "rlgan_core.builtin.progress",
    "rlgan_core.builtin.logs",
    "rlgan_core.builtin.pictures",
    "rlgan_core.builtin.checkpoints",
)


@dataclass(frozen=True)
class BrokenPlugin:
    """An installed plugin that could not be loaded, and why (``rlgan plugins`` lists it)."""

    name: str
    distribution: str | None
    version: str | None
    error: str

    def __str__(self) -> str:
        origin = f" (from {self.distribution} {self.version})" if self.distribution else ""
        return f"plugin {self.name!r}{origin} failed to load: {self.error}"


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, plus each installed plugin's distribution and the plugins that broke."""

    def __init__(self):
        super().__init__("rlgan")
        self.distributions: dict[str, tuple[str, str]] = {}  # plugin name: (distribution, version)
        self.broken: list[BrokenPlugin] = []


@cache
def get_plugin_manager() -> PluginManager:
    """Make the process-wide plugin manager: built-ins first, then the ``rlgan`` entry points.

    An installed plugin that fails to import, or implements a hook that does not exist or with
    arguments it does not have, is left out and recorded in ``broken``: the other plugins keep
    working, and a run that names something only it would have registered says why it is missing.
    ``RLGAN_LOAD_PLUGINS=0`` skips installed plugins (built-ins only); ``RLGAN_DISABLE_PLUGINS``
    names plugins (comma-separated, as ``rlgan plugins`` lists them) to leave out.
    """
    pm = PluginManager()
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as error:
        raise invalid_plugin(error) from None
    for name in filter(None, os.environ.get("RLGAN_DISABLE_PLUGINS", "").split(",")):
        pm.set_blocked(name.strip())
    if os.environ.get("RLGAN_LOAD_PLUGINS", "1") != "0":
        for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
            load_entry_point(pm, entry_point)
    return pm


def load_entry_point(pm: PluginManager, entry_point: metadata.EntryPoint) -> None:
    """Register one installed plugin, or record why it could not be."""
    if pm.is_blocked(entry_point.name) or pm.get_plugin(entry_point.name) is not None:
        return
    dist = entry_point.dist
    distribution, version = (dist.name, dist.version) if dist is not None else (None, None)
    try:
        plugin = entry_point.load()
        pm.register(plugin, name=entry_point.name)
        unknown = [caller.name for caller in pm.get_hookcallers(plugin) or () if caller.spec is None
                   and any(impl.plugin is plugin and not impl.optionalhook for impl in caller.get_hookimpls())]
        if unknown:
            pm.unregister(plugin)
            raise PluginError(f"it implements {', '.join(unknown)}, which is not an rlgan hook (docs/plugins.md)")
    except Exception as error:  # whatever the plugin's own code raised
        pm.broken.append(BrokenPlugin(entry_point.name, distribution, version, f"{type(error).__name__}: {error}"))
        return
    if distribution is not None:
        pm.distributions[entry_point.name] = (distribution, version)


def invalid_plugin(error: pluggy.PluginValidationError) -> PluginError:
    """Turn pluggy's validation error (unknown hook, wrong arguments) into one naming the plugin."""
    name = getattr(error.plugin, "__name__", None) or type(error.plugin).__name__
    return PluginError(f"plugin {name!r} is invalid: {error}")


def registries(pm: PluginManager | None = None) -> Registries:
    """The models, rewards, data sources and strategies that the plugins register now."""
    pm = pm or get_plugin_manager()
    return collect(pm, getattr(pm, "broken", []))


def describe_plugins(pm: PluginManager | None = None) -> list[dict]:
    """Every plugin with its version, its hooks and the names it registers, for ``rlgan plugins``;
    plugins that failed to load come last, with ``broken`` saying why."""
    pm = pm or get_plugin_manager()
    found = registries(pm)
    distributions = getattr(pm, "distributions", {})
    described = []
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin)
        distribution, version = distributions.get(name, (None, None))
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or ())
        registered = {
            kind: sorted(entry.name for entry in registry if entry.plugin == name)
            for kind, registry in (
                ("models", found.models), ("rewards", found.rewards), ("data", found.data), ("strategies", found.strategies)
            )
        }
        described.append(
            {
                "name": name,
                "distribution": distribution,
                "version": version,
                "hooks": hooks,
                **{kind: names for kind, names in registered.items() if names},
            }
        )
    described.sort(key=lambda entry: (entry["distribution"] is not None, entry["name"]))
    broken = [{"name": b.name, "distribution": b.distribution, "version": b.version, "broken": b.error}
              for b in getattr(pm, "broken", [])]
    return described + broken
