from pathlib import Path

import pytest

from rlgan_core.config import DEFAULT_MODELS, Config, load_config, to_dict
from rlgan_core.errors import ConfigError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_digits_toml_writes_out_the_defaults():
    """The default run: the `gan` strategy, whose two model roles get their default models."""
    defaults = Config(**{role: make() for role, make in DEFAULT_MODELS.items()})
    assert to_dict(load_config(CONFIGS / "digits.toml")) == to_dict(defaults)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path):
    load_config(path)


@pytest.mark.parametrize("text,message", [
    ("[run]\nstepz = 3", r"run.stepz: unknown key"),
    ("[run]\nsteps = 'many'", r"run.steps: expected int, got str"),
    ("[run]\nsteps = 0", r"run.steps: must be positive"),
    ("[loss]\nbaseline = 'median'", r"loss.baseline: must be one of"),
    ("[optimizer]\nbetas = [0.5, 'x']", r"optimizer.betas\[1\]: expected float"),
    ("[data]\nsplit = 'train'", r"data: missing key 'name'"),
    ("[rewards.realism]\nweight = 'high'", r"rewards.realism.weight: expected float"),
    ("[surprise]\nx = 1", r"surprise: unknown key"),
    ("[run\n", r"not valid TOML"),
])
def test_validation_errors_say_where(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"bad.toml: .*{message}|bad.toml: {message}"):
        load_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")
