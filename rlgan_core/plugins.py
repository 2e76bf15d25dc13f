"""The plugin manager: built-in plugins and installed ones, registered the same way."""

import importlib
import os
from functools import cache

import pluggy

from . import hookspecs
from .errors import PluginError
from .registry import Registries, collect

ENTRY_POINT_GROUP = "rlgan"

DEFAULT_PLUGINS = (
    "rlgan_core.builtin.strategies",
    "rlgan_core.builtin.models",
    "rlgan_core.builtin.data",
    "rlgan_core.builtin.rewards",
    "rlgan_core.builtin.evaluation",
    "rlgan_core.builtin.progress",
    "rlgan_core.builtin.logs",
    "rlgan_core.builtin.pictures",
    "rlgan_core.builtin.checkpoints",
)


@cache
def get_plugin_manager() -> pluggy.PluginManager:
    """Make the process-wide plugin manager: built-ins first, then the ``rlgan`` entry points.

    Setting ``RLGAN_LOAD_PLUGINS=0`` skips installed plugins (built-ins only).
    """
    pm = pluggy.PluginManager("rlgan")
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    try:
        if os.environ.get("RLGAN_LOAD_PLUGINS", "1") != "0":
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        pm.check_pending()
    except pluggy.PluginValidationError as error:
        raise invalid_plugin(error) from None
    return pm


def invalid_plugin(error: pluggy.PluginValidationError) -> PluginError:
    """Turn pluggy's validation error (unknown hook, wrong arguments) into one naming the plugin."""
    name = getattr(error.plugin, "__name__", None) or type(error.plugin).__name__
    return PluginError(f"plugin {name!r} is invalid: {error}")


def registries(pm: pluggy.PluginManager | None = None) -> Registries:
    """The models, rewards, data sources and strategies that the plugins register now."""
    return collect(pm or get_plugin_manager())


def describe_plugins(pm: pluggy.PluginManager | None = None) -> list[dict]:
    """Every plugin with its version, its hooks and the names it registers, for ``rlgan plugins``."""
    pm = pm or get_plugin_manager()
    found = collect(pm)
    distributions = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    described = []
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin)
        dist = distributions.get(id(plugin))
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
                "distribution": dist.project_name if dist else None,
                "version": dist.version if dist else None,
                "hooks": hooks,
                **{kind: names for kind, names in registered.items() if names},
            }
        )
    return sorted(described, key=lambda entry: (entry["distribution"] is not None, entry["name"]))
