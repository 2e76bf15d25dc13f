import ast
import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlgan_core import Reward, hookimpl
from rlgan_core.config import parse_config
from rlgan_core.engine import Engine
from rlgan_core.errors import ConfigError, PluginError, UnknownNameError
from rlgan_core.plugins import describe_plugins, get_plugin_manager, invalid_plugin, registries
from rlgan_core.testing import quick_config

from helpers import tiny_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def registered():
    """Register plugin objects for one test, then remove them."""
    pm = get_plugin_manager()
    added = []

    def register(plugin, name):
        pm.register(plugin, name=name)
        added.append(plugin)
        return plugin

    yield register
    for plugin in added:
        pm.unregister(plugin)


def test_builtins_register_through_the_hooks():
    found = registries()
    assert {"mlp_generator", "mlp_discriminator"} <= {e.name for e in found.models}
    assert {"realism", "digit_class"} <= {e.name for e in found.rewards}
    assert {"digits", "mnist", "gaussians"} <= {e.name for e in found.data}
    assert found.rewards.get("realism").plugin == "rlgan_core.builtin.rewards"


def test_unknown_hook_fails_loudly_naming_the_plugin():
    class Misspelt:
        @hookimpl
        def rlgan_register_reward(self, register):  # missing "s"
            pass

    pm = get_plugin_manager()
    pm.register(Misspelt(), name="misspelt")
    try:
        with pytest.raises(Exception) as raised:
            pm.check_pending()
        error = invalid_plugin(raised.value)
        assert isinstance(error, PluginError)
        assert "rlgan_register_reward" in str(error) and "Misspelt" in str(error)
    finally:
        pm.unregister(name="misspelt")


def test_a_name_two_plugins_register_is_an_error_only_when_used_and_plugin_colon_name_picks_one(registered):
    class Duplicate:
        @hookimpl
        def rlgan_register_rewards(self, register):
            register("realism", Reward)

    registered(Duplicate(), "duplicate-plugin")
    found = registries()  # every other name keeps working
    assert found.rewards.get("digit_class").plugin == "rlgan_core.builtin.rewards"
    with pytest.raises(PluginError, match=r"'realism' is registered by plugins 'rlgan_core.builtin.rewards' and "
                                          r"'duplicate-plugin': name one, as .*'duplicate-plugin:realism'"):
        found.rewards.get("realism")
    assert found.rewards.get("duplicate-plugin:realism").factory is Reward
    assert found.rewards.get("rlgan_core.builtin.rewards:realism").plugin == "rlgan_core.builtin.rewards"


def fake_distribution(site, name, entry_points, module_code=None):
    """An installed distribution with ``rlgan`` entry points, as pip would leave it in ``site``."""
    info = site / f"{name.replace('-', '_')}-0.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text("[rlgan]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    if module_code is not None:
        (site / f"{name.replace('-', '_')}.py").write_text(module_code)


def test_a_plugin_that_fails_to_load_is_listed_as_broken_and_the_others_keep_working(tmp_path):
    site = tmp_path / "site"
    fake_distribution(site, "broken-glow", {"glow": "no_such_module_anywhere"})
    fake_distribution(site, "misspelt-hook", {"misspelt": "misspelt_hook"},
                      "from rlgan_core import hookimpl\n\n@hookimpl\ndef rlgan_register_reward(register):\n    pass\n")
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    listed = subprocess.run([sys.executable, "-m", "rlgan_core", "plugins"], capture_output=True, text=True, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "glow  (broken-glow 0.3)\n    BROKEN, not loaded: ModuleNotFoundError" in listed.stdout
    assert "misspelt  (misspelt-hook 0.3)\n    BROKEN, not loaded: PluginError: it implements rlgan_register_reward" in listed.stdout
    assert "novelty  (rlgan-novelty 0.1.0)" in listed.stdout  # the others are loaded
    config = tmp_path / "glow.toml"
    config.write_text('[run]\nsteps = 2\nbatch_size = 8\ndevice = "cpu"\n[rewards.glow]\nweight = 1.0\n'
                      '[logging]\nprogress = false\ntensorboard = false\n')
    run = subprocess.run([sys.executable, "-m", "rlgan_core", "train", str(config), "--run-dir", str(tmp_path / "run")],
                         capture_output=True, text=True, env=env)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.count("\n") == 1 and "no reward named 'glow'" in run.stderr
    assert "plugin 'glow' (from broken-glow 0.3) failed to load: ModuleNotFoundError" in run.stderr
    disabled = subprocess.run([sys.executable, "-m", "rlgan_core", "plugins"], capture_output=True, text=True,
                              env={**env, "RLGAN_DISABLE_PLUGINS": "novelty,glow"})
    assert "novelty" not in disabled.stdout and "glow" not in disabled.stdout


def test_config_naming_an_unregistered_reward_lists_the_known_ones(tmp_path):
    config = tiny_config(rewards={"no_such_reward": {"weight": 1.0}})
    with pytest.raises(UnknownNameError, match=r"no reward named 'no_such_reward'.*available: .*digit_class.*realism"):
        Engine(config, tmp_path)


def test_a_missing_name_of_a_first_party_plugin_says_which_plugin_brings_it():
    from rlgan_core.registry import FIRST_PARTY

    shipped = {}
    for entry in describe_plugins():
        if "broken" not in entry and (entry["distribution"] or "").startswith("rlgan-"):
            for kind in ("models", "rewards", "data", "strategies"):
                shipped.update(dict.fromkeys(entry.get(kind, ()), entry["distribution"]))
    assert shipped == FIRST_PARTY  # the table stays in step with plugins/
    missing = subprocess.run([sys.executable, "-c", "from rlgan_core.plugins import registries; registries().strategies.get('ddpo')"],
                             capture_output=True, text=True, env={**os.environ, "RLGAN_DISABLE_PLUGINS": "diffusion"})
    assert "'ddpo' comes with the rlgan-diffusion plugin: pip install plugins/rlgan-diffusion" in missing.stderr


def test_unknown_model_and_data_names(tmp_path):
    with pytest.raises(UnknownNameError, match="no model named 'transformer'"):
        Engine(tiny_config(generator={"name": "transformer"}), tmp_path)
    with pytest.raises(UnknownNameError, match="no data source named 'imagenet'.*digits"):
        Engine(tiny_config(data={"name": "imagenet"}), tmp_path)


def test_entry_point_plugin_is_listed_by_the_cli():
    result = subprocess.run([sys.executable, "-m", "rlgan_core", "plugins"], capture_output=True, text=True, check=True)
    assert "novelty  (rlgan-novelty 0.1.0)" in result.stdout
    assert "rewards: novelty" in result.stdout
    assert "rlgan_core.builtin.rewards  (built-in)" in result.stdout


def test_entry_point_plugin_is_usable_by_name_from_a_config(tmp_path):
    listed = {entry["name"]: entry for entry in describe_plugins()}
    assert listed["novelty"]["distribution"] == "rlgan-novelty"
    config = tiny_config(rewards={"realism": {"weight": 1.0}, "novelty": {"weight": 0.5, "pathwise": True}})
    summary = Engine(config, tmp_path).run()
    assert summary["plugins"]["novelty"] == "0.1.0"
    assert summary["config"]["rewards"]["novelty"]["weight"] == 0.5


def test_a_reward_plugin_changes_training(tmp_path, registered):
    class Brightness(Reward):
        differentiable = True

        def __call__(self, samples, context):
            return samples.mean(dim=1)

    class BrightnessPlugin:
        @hookimpl
        def rlgan_register_rewards(self, register):
            register("test_brightness", Brightness)

    registered(BrightnessPlugin(), "brightness-plugin")
    plain = Engine(tiny_config(), tmp_path / "plain")
    plain.run()
    steered = Engine(
        tiny_config(rewards={"realism": {}, "test_brightness": {"weight": 5.0, "pathwise": True}}), tmp_path / "steered"
    )
    steered.run()
    assert steered.generate(500).mean() > plain.generate(500).mean() + 0.02


def test_lifecycle_hooks_are_called_in_order(tmp_path, registered):
    calls = []

    class Recorder:
        @hookimpl
        def rlgan_train_start(self, engine):
            calls.append(("start", engine.state.step))

        @hookimpl
        def rlgan_step_end(self, output):
            calls.append(("step", output.step))

        @hookimpl
        def rlgan_evaluate(self, samples):
            return {"recorded_mean": float(samples.mean())}

        @hookimpl
        def rlgan_evaluation_end(self, engine, metrics):
            calls.append(("evaluated", engine.state.step, "recorded_mean" in metrics))

        @hookimpl
        def rlgan_train_end(self, summary):
            calls.append(("end", summary["steps"]))
            summary["recorder"] = True

    registered(Recorder(), "recorder")
    summary = Engine(tiny_config(run={"steps": 10}), tmp_path).run()
    assert calls[0] == ("start", 0) and calls[1] == ("evaluated", 0, True)
    assert [c[1] for c in calls if c[0] == "step"] == list(range(10))
    assert ("evaluated", 10, True) in calls and calls[-1] == ("end", 10)
    assert summary["recorder"] and "recorded_mean" in summary


def test_every_hook_is_documented_with_its_signature():
    from rlgan_core import hookspecs

    docs = (ROOT / "docs" / "plugins.md").read_text()
    hooks = [name for name in dir(hookspecs) if name.startswith("rlgan_")]
    assert len(hooks) >= 8
    for name in hooks:
        arguments = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"`{name}({arguments})`" in docs, f"{name}({arguments}) is missing from docs/plugins.md"


def test_reward_context_carries_the_batch_and_models(tmp_path, registered):
    seen = {}

    class Inspect(Reward):
        def __call__(self, samples, context):
            seen.update(step=context.step, labels=context.batch["label"], logits=context.discriminator_logits)
            seen["models"] = (context.generator, context.discriminator)
            return torch.zeros(len(samples))

    class InspectPlugin:
        @hookimpl
        def rlgan_register_rewards(self, register):
            register("inspect", Inspect)

    registered(InspectPlugin(), "inspect-plugin")
    engine = Engine(tiny_config(run={"steps": 3}, rewards={"inspect": {}}), tmp_path)
    engine.run()
    assert seen["step"] == 2 and seen["labels"].shape == (16,) and seen["logits"].shape == (16,)
    assert seen["models"] == (engine.generator, engine.discriminator)


def documented_api() -> dict[str, set[str]]:
    """The names of docs/plugins.md's "The public API" section, by module."""
    docs = (ROOT / "docs" / "plugins.md").read_text()
    section = docs.split("## The public API", 1)[1].split("\n## ", 1)[0]
    api = {}
    for line in section.splitlines():
        match = re.match(r"- `(rlgan_core[\w.]*)`: (.*)", line)
        if match:
            api[match[1]] = set(re.findall(r"`(\w+)`", match[2]))
    return api


def test_the_documented_api_exists():
    api = documented_api()
    assert "rlgan_core" in api and "rlgan_core.ops" in api
    assert set(api["rlgan_core"]) == set(importlib.import_module("rlgan_core").__all__)
    for module, names in api.items():
        for name in names:
            assert hasattr(importlib.import_module(module), name), f"{module}.{name}"


def test_plugins_import_only_the_documented_api():
    api = documented_api()
    for path in sorted((ROOT / "plugins").rglob("*.py")):
        if "build" in path.parts or "egg-info" in str(path):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rlgan_core"):
                for alias in node.names:
                    assert alias.name in api.get(node.module, set()), f"{path}: {node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("rlgan_core.") or alias.name in api, f"{path}: {alias.name}"


def test_plugin_options_are_checked_against_the_factory_annotations(tmp_path):
    with pytest.raises(ConfigError, match=r"\[generator\].*option 'latent_dim' must be an integer, got '64'"):
        Engine(tiny_config(generator={"latent_dim": "64"}), tmp_path)
    with pytest.raises(ConfigError, match=r"option 'hidden' must be list\[int\], got \[32, 'x'\]"):
        Engine(tiny_config(generator={"hidden": [32, "x"]}), tmp_path)
    Engine(tiny_config(generator={"noise": 1}), tmp_path)  # an integer is a fine float


def test_any_error_a_factory_raises_names_the_section_and_the_plugin(tmp_path, registered):
    class NeedsAFile(Reward):
        def __init__(self, path: str = "weights.bin"):
            open(path, "rb")

    class FilePlugin:
        @hookimpl
        def rlgan_register_rewards(self, register):
            register("needs_a_file", NeedsAFile)

    registered(FilePlugin(), "file-plugin")
    config = tiny_config(rewards={"needs_a_file": {"path": str(tmp_path / "missing.bin")}})
    with pytest.raises(ConfigError, match=r"\[rewards.needs_a_file\] 'needs_a_file' \(plugin 'file-plugin'\): "
                                          r"FileNotFoundError: .*missing.bin"):
        Engine(config, tmp_path)


def test_the_built_in_plugins_pass_the_conformance_kit():
    from rlgan_core.builtin.data import Digits, Gaussians
    from rlgan_core.builtin.models import MaxoutDiscriminator, MLPDiscriminator, MLPGenerator
    from rlgan_core.builtin.rewards import DigitClass, InsideBox, MirrorSymmetry
    from rlgan_core.testing import (ContractError, check_data_source, check_model, check_reward, check_strategy,
                                    quick_config)

    for reward in (DigitClass(3), MirrorSymmetry(), InsideBox([0.0] * 64, [1.0] * 64)):
        check_reward(reward)
    digits, points = Digits(), Gaussians()
    check_model(MLPGenerator(digits), digits)
    check_model(MLPGenerator(points, latent_dim=2, batch_norm=True, activation="relu", output="linear"), points)
    check_model(MLPDiscriminator(digits, spectral_norm=True, pack=2), digits, role="discriminator")
    check_model(MaxoutDiscriminator(points, pack=4), points, role="discriminator")
    check_data_source(Digits, value_range=(-1, 1))
    check_data_source(Gaussians, {"layout": "grid"})
    for strategy in ({"name": "gan", "r1": 1.0, "ema_decay": 0.9}, {"name": "ppo", "epochs": 2}):
        generator = {"noise": 0.1} if strategy["name"] == "ppo" else {}
        check_strategy(quick_config(strategy=strategy, generator=generator))
    with pytest.raises(ContractError, match=r"reward .*: a reward returns one value per sample, shape \(8,\); "
                                            r"it returned shape \(8, 2\)"):
        check_reward(lambda samples, context: torch.zeros(len(samples), 2))


def test_a_model_with_the_wrong_output_shape_is_named_before_training(tmp_path, registered):
    class Flat(torch.nn.Module):
        latent_dim = 4

        def __init__(self, data):
            super().__init__()
            self.linear = torch.nn.Linear(4, 10)

        def forward(self, z):
            return self.linear(z)

    class FlatPlugin:
        @hookimpl
        def rlgan_register_models(self, register):
            register("flat", Flat)

    registered(FlatPlugin(), "flat-plugin")
    with pytest.raises(ConfigError, match=r"\[generator\] 'flat': generator\(latents of shape \(2, 4\)\) returned "
                                          r"\(2, 10\); expected \(2, 64\)"):
        Engine(parse_config(quick_config(generator={"name": "flat"})), tmp_path)
