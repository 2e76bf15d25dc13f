import json
import math

import pytest
import torch

from rlgan_core import Reward, Strategy, hookimpl
from rlgan_core.builtin.strategies import GAN
from rlgan_core.checkpoint import list_checkpoints
from rlgan_core.engine import Engine
from rlgan_core.errors import CheckpointError, ConfigError, RewardError
from rlgan_core.plugins import get_plugin_manager

from helpers import tiny_config


def weights(engine):
    return {k: v.clone() for k, v in {**engine.generator.state_dict(), **engine.discriminator.state_dict()}.items()}


def test_run_writes_everything_a_user_looks_at(tmp_path):
    summary = Engine(tiny_config(logging={"tensorboard": True}), tmp_path).run()
    for name in ("samples.png", "curves.png", "metrics.jsonl", "summary.json"):
        assert (tmp_path / name).exists(), name
    assert any((tmp_path / "tensorboard").iterdir())
    assert list_checkpoints(tmp_path / "checkpoints")[-1].name == "step-00000020"
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["steps"] == 20 and written == summary
    for key in ("frechet_distance", "frechet_distance_initial", "classes_covered", "wall_time_s", "config", "plugins"):
        assert key in written


def test_resume_continues_exactly(tmp_path):
    uninterrupted = Engine(tiny_config(), tmp_path / "full")
    uninterrupted.run()
    first = Engine(tiny_config(run={"steps": 10}), tmp_path / "part")
    first.run()
    resumed = Engine(tiny_config(), tmp_path / "part")
    resumed.load_checkpoint(list_checkpoints(tmp_path / "part" / "checkpoints")[-1])
    assert resumed.state.step == 10
    resumed.run()
    expected, got = weights(uninterrupted), weights(resumed)
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert resumed.state.initial_metrics == uninterrupted.state.initial_metrics


def test_tampered_and_truncated_checkpoints_give_clear_errors(tmp_path):
    engine = Engine(tiny_config(run={"steps": 5}), tmp_path)
    engine.run()
    saved = list_checkpoints(tmp_path / "checkpoints")[-1]
    tensors = saved / "tensors.safetensors"
    data = bytearray(tensors.read_bytes())
    data[-10] ^= 0xFF
    tensors.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="do not match the checksum"):
        engine.load_checkpoint(saved)
    tensors.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(CheckpointError):
        engine.load_checkpoint(saved)
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        engine.load_checkpoint(tmp_path)


class BadReward(Reward):
    def __init__(self, kind: str = "nan"):
        self.kind = kind

    def __call__(self, samples, context):
        n = len(samples)
        if self.kind == "nan":
            return torch.full((n,), math.nan)
        if self.kind == "shape":
            return torch.zeros(n, 2)
        if self.kind == "device":
            return torch.zeros(n, device="meta")
        raise RuntimeError("the reward service is down")


class BadRewardPlugin:
    @hookimpl
    def rlgan_register_rewards(self, register):
        register("bad", BadReward)


@pytest.mark.parametrize("kind,message", [
    ("nan", "returned NaN"), ("shape", r"returned \(16, 2\)"), ("device", "on meta"), ("raise", "service is down"),
])
def test_bad_rewards_stop_the_run_naming_the_plugin(tmp_path, kind, message):
    pm = get_plugin_manager()
    pm.register(BadRewardPlugin(), name="bad-reward-plugin")
    try:
        engine = Engine(tiny_config(rewards={"bad": {"kind": kind}}), tmp_path)
        with pytest.raises(RewardError, match=rf"reward 'bad' \(plugin 'bad-reward-plugin'\).*step 0.*{message}"):
            engine.run()
    finally:
        pm.unregister(name="bad-reward-plugin")


def test_reward_options_are_checked_against_the_factory(tmp_path):
    with pytest.raises(ConfigError, match=r"rewards.digit_class.*unknown option 'digit'.*accepted: target"):
        Engine(tiny_config(rewards={"digit_class": {"digit": 3}}), tmp_path)
    with pytest.raises(ConfigError, match="target must be a digit"):
        Engine(tiny_config(rewards={"digit_class": {"target": 12}}), tmp_path)
    pm = get_plugin_manager()
    pm.register(BadRewardPlugin(), name="bad-reward-plugin")
    try:
        with pytest.raises(ConfigError, match=r"pathwise = true, but reward 'bad'.*not differentiable"):
            Engine(tiny_config(rewards={"bad": {"pathwise": True}}), tmp_path)
    finally:
        pm.unregister(name="bad-reward-plugin")


def test_fused_and_fallback_engines_train_the_same(tmp_path, monkeypatch):
    results = []
    for backend in ("fused", "fallback"):
        engine = Engine(tiny_config(kernel={"backend": backend}), tmp_path / backend)
        engine.run()
        results.append(weights(engine))
    for key in results[0]:
        torch.testing.assert_close(results[0][key], results[1][key], rtol=1e-4, atol=1e-5)


def test_gaussians_data_source_and_metrics(tmp_path):
    from rlgan_core.builtin.data import Gaussians

    grid = Gaussians(layout="grid", samples=5000)
    assert grid.tensors()["x"].shape == (5000, 2)
    perfect = grid.metrics(grid.tensors()["x"][:2500])
    assert perfect["modes_covered"] == 25 and perfect["high_quality_fraction"] > 0.98  # 98.9% of a 2-D Gaussian lies within 3 std
    collapsed = grid.metrics(torch.zeros(100, 2))
    assert collapsed["modes_covered"] == 1 and collapsed["high_quality_fraction"] == 1.0
    far = grid.metrics(torch.full((100, 2), 10.0))
    assert far["modes_covered"] == 0 and far["high_quality_fraction"] == 0.0
    summary = Engine(tiny_config(data={"name": "gaussians", "layout": "ring"}, generator={"output": "linear"}),
                     tmp_path).run()
    assert 0 <= summary["modes_covered"] <= 8 and "high_quality_fraction" in summary


class TwoPhaseStrategy(Strategy):
    """Generator-only steps for ``first`` steps, then the built-in GAN step; counts its steps."""

    def __init__(self, engine, first: int = 3):
        super().__init__(engine)
        self.first, self.taken = first, torch.zeros((), dtype=torch.long)
        self.gan = GAN(engine)

    def phase(self, step):
        return "warmup" if step < self.first else "gan"

    def step(self):
        self.taken += 1
        return self.gan.step()

    def state_dict(self):
        return {"taken": self.taken}

    def load_state_dict(self, state):
        self.taken = state["taken"].clone()


class StrategyPlugin:
    @hookimpl
    def rlgan_register_strategies(self, register):
        register("two_phase", TwoPhaseStrategy)


def test_a_plugin_strategy_runs_the_steps_with_phases_and_resumes(tmp_path):
    pm = get_plugin_manager()
    pm.register(StrategyPlugin(), name="strategy-plugin")
    try:
        config = tiny_config(run={"steps": 10}, strategy={"name": "two_phase", "first": 4})
        summary = Engine(config, tmp_path).run()
        # evaluated at the end of the warm-up phase (step 4), besides every 10 steps
        steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
                 if "eval/frechet_distance" in line]
        assert steps == [0, 4, 10]
        assert summary["frechet_distance_warmup"] != summary["frechet_distance"]
        resumed = Engine(config, tmp_path)
        resumed.load_checkpoint(list_checkpoints(tmp_path / "checkpoints")[0])
        assert resumed.state.step == 5 and int(resumed.strategy.taken) == 5
        assert "warmup" in resumed.state.phase_metrics
        with pytest.raises(ConfigError, match=r"\[strategy\].*unknown option 'second'"):
            Engine(tiny_config(strategy={"name": "two_phase", "second": 1}), tmp_path / "bad")
    finally:
        pm.unregister(name="strategy-plugin")


def test_skip_mode_says_why_and_stops_a_run_whose_reward_always_fails(tmp_path):
    pm = get_plugin_manager()
    pm.register(BadRewardPlugin(), name="bad-reward-plugin")
    try:
        config = tiny_config(run={"on_bad_reward": "skip", "steps": 30}, rewards={"bad": {"kind": "shape"}})
        with pytest.warns(UserWarning, match=r"skipping this batch's update.*reward 'bad'.*returned \(16, 2\)"):
            with pytest.raises(RewardError, match=r"10 of 10 batches skipped, more than run.max_skipped_fraction = 0.1"
                                                  r"; the latest: reward 'bad' \(plugin 'bad-reward-plugin'\) at step 9"):
                Engine(config, tmp_path).run()
    finally:
        pm.unregister(name="bad-reward-plugin")


class SometimesFails(Reward):
    def __call__(self, samples, context):
        if context.step == 3:
            raise RuntimeError("a timeout")
        return torch.zeros(len(samples))


def test_skip_mode_rides_out_a_rare_failure(tmp_path, recwarn):
    pm = get_plugin_manager()
    plugin = type("SometimesPlugin", (), {"rlgan_register_rewards": hookimpl(
        lambda self, register: register("sometimes", SometimesFails))})()
    pm.register(plugin, name="sometimes-plugin")
    try:
        config = tiny_config(run={"on_bad_reward": "skip"}, rewards={"realism": {}, "sometimes": {}})
        summary = Engine(config, tmp_path).run()
    finally:
        pm.unregister(name="sometimes-plugin")
    assert summary["skipped_batches"] == 1 and summary["steps"] == 20
    assert any("a timeout" in str(w.message) for w in recwarn)
