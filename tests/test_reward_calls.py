"""How the engine calls rewards: weight schedules, chunks, worker threads and futures."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from rlgan_core import Reward, hookimpl, read_metrics
from rlgan_core.config import parse_config
from rlgan_core.engine import Engine
from rlgan_core.errors import ConfigError, RewardError
from rlgan_core.plugins import get_plugin_manager
from rlgan_core.scoring import BoundReward
from rlgan_core.testing import check_reward, quick_config

from helpers import tiny_config


class Brightness(Reward):
    """The mean pixel, recording each call's batch size, logits size and thread."""

    def __init__(self, fail: bool = False):
        self.fail, self.calls = fail, []

    def __call__(self, samples, context):
        logits = context.discriminator_logits
        self.calls.append((len(samples), None if logits is None else len(logits), threading.current_thread().name))
        if self.fail:
            raise RuntimeError("the scoring service timed out")
        return samples.flatten(1).mean(1)


class OwnWorkers(Reward):
    """A reward with an option of its own named like an engine key."""

    def __init__(self, workers: int = 1):
        self.workers = workers

    def __call__(self, samples, context):
        return torch.zeros(len(samples))


class Delayed(Reward):
    """Returns a future of the brightness, computed on a pool of its own."""

    pool = ThreadPoolExecutor(1)

    def __call__(self, samples, context):
        return self.pool.submit(lambda: samples.flatten(1).mean(1))


class Probe(Reward):
    """Tells the test when it is called from a worker thread."""

    started = threading.Event()

    def __call__(self, samples, context):
        if threading.current_thread() is not threading.main_thread():
            Probe.started.set()
        return torch.zeros(len(samples))


made = {}


class Plugin:
    @hookimpl
    def rlgan_register_rewards(self, register):
        def brightness(**options):
            made["brightness"] = Brightness(**options)
            return made["brightness"]

        register("brightness", brightness)
        register("delayed", Delayed)
        register("own_workers", OwnWorkers)
        register("probe", Probe)


@pytest.fixture
def plugin():
    pm = get_plugin_manager()
    pm.register(Plugin(), name="calls-plugin")
    yield pm
    pm.unregister(name="calls-plugin")


def test_a_weight_schedule_is_linear_between_its_points_and_flat_outside():
    bound = BoundReward("r", "p", None, 0.0, False, schedule=((10, 0.0), (20, 1.0), (30, 0.5)))
    assert [bound.weight_at(step) for step in (0, 10, 15, 20, 25, 30, 99)] == [0.0, 0.0, 0.5, 1.0, 0.75, 0.5, 0.5]
    assert BoundReward("r", "p", None, 2.0, False).weight_at(7) == 2.0


@pytest.mark.parametrize("weight,message", [
    ([], "at least one"), ([[0, 1.0], [0, 2.0]], "must rise"), ([[0.5, 1.0]], "integer >= 0"),
    ([[0, 1.0, 2.0]], r"\[step, weight\] pair"), ([[0, "high"]], r"\[0\]: expected float"),
])
def test_bad_weight_schedules_are_config_errors(weight, message):
    with pytest.raises(ConfigError, match=rf"rewards\.realism\.weight.*{message}"):
        parse_config(quick_config(rewards={"realism": {"weight": weight}}))


def test_scheduled_weights_reach_the_logs_raw_and_weighted(tmp_path):
    config = tiny_config(rewards={"realism": {"weight": [[0, 0.0], [10, 1.0]]}, "mirror_symmetry": {"weight": 0.5}},
                         logging={"every": 1})
    Engine(config, tmp_path).run()
    records = [r for r in read_metrics(tmp_path) if "reward/total" in r]
    assert len(records) == 20
    for record in records:
        weight = min((record["step"] - 1) / 10, 1.0)  # the record of step s is logged once it is taken, as s + 1
        assert record["reward/realism/weighted"] == pytest.approx(weight * record["reward/realism"], abs=1e-12)
        assert record["reward/mirror_symmetry/weighted"] == pytest.approx(0.5 * record["reward/mirror_symmetry"])
        assert record["reward/total"] == pytest.approx(record["reward/realism/weighted"]
                                                       + record["reward/mirror_symmetry/weighted"])


def test_chunked_calls_see_their_rows_and_give_the_whole_batch(tmp_path, plugin):
    engine = Engine(tiny_config(rewards={"brightness": {"chunk_size": 5}}), tmp_path)
    context, samples = engine.context, torch.rand(16, 8, 8)
    logits = torch.randn(16)
    rewards = context.compute_rewards(samples, context.reward_context(discriminator_logits=logits))
    assert [(n, m) for n, m, _ in made["brightness"].calls] == [(5, 5), (5, 5), (5, 5), (1, 1)]
    torch.testing.assert_close(rewards[:, 0], samples.flatten(1).mean(1))


def test_a_plugin_that_takes_an_option_named_workers_keeps_it(tmp_path, plugin):
    engine = Engine(tiny_config(rewards={"own_workers": {"workers": 3}}), tmp_path)
    assert engine.context.rewards[0].reward.workers == 3 and engine.context.rewards[0].workers == 0


def test_a_reward_may_return_a_future(tmp_path, plugin):
    engine = Engine(tiny_config(rewards={"delayed": {}}), tmp_path)
    samples = torch.rand(16, 8, 8)
    rewards = engine.context.compute_rewards(samples, engine.context.reward_context())
    torch.testing.assert_close(rewards[:, 0], samples.flatten(1).mean(1))
    assert engine.run()["steps"] == 20
    check_reward(Delayed())  # the conformance kit waits for it as the engine does


def test_asynchronous_rewards_run_in_workers_while_the_discriminator_trains(tmp_path, plugin):
    """The discriminator's first training forward pass waits for the probe reward to be called
    from a worker: it can be only if the reward was started before the discriminator's update."""
    Probe.started.clear()
    engine = Engine(tiny_config(run={"steps": 1}, rewards={"probe": {"workers": 1}}), tmp_path)
    waited = []

    def wait_for_the_reward(module, inputs):
        if module.training and not waited:
            waited.append(Probe.started.wait(timeout=30))

    handle = engine.discriminator.register_forward_pre_hook(wait_for_the_reward)
    try:
        engine.run()
    finally:
        handle.remove()
    assert waited == [True]


def test_asynchronous_rewards_score_every_batch_in_chunks_in_their_workers(tmp_path, plugin):
    summary = Engine(tiny_config(rewards={"brightness": {"workers": 2, "chunk_size": 4}}), tmp_path).run()
    calls = made["brightness"].calls
    assert summary["steps"] == 20 and all(n == 4 for n, _, _ in calls)  # evaluation's 200 samples too
    training = [thread for _, logits, thread in calls if thread != "MainThread"]
    assert len(training) == 20 * 16 // 4 and all(thread.startswith("reward-brightness") for thread in training)


def test_a_failing_asynchronous_reward_stops_the_run_naming_it(tmp_path, plugin):
    engine = Engine(tiny_config(rewards={"brightness": {"fail": True, "chunk_size": 8}, "realism": {}}), tmp_path)
    with pytest.raises(RewardError, match=r"reward 'brightness' \(plugin 'calls-plugin'\) at step 0 raised "
                                          r"RuntimeError: the scoring service timed out"):
        engine.run()


def test_rewards_that_need_the_training_thread_refuse_workers(tmp_path):
    with pytest.raises(ConfigError, match=r"\[rewards.digit_class\] pathwise = true needs its gradient: it runs "
                                          r"on the training thread; drop workers"):
        Engine(tiny_config(rewards={"digit_class": {"pathwise": True, "workers": 2}}), tmp_path)
    with pytest.raises(ConfigError, match=r"\[rewards.realism\] it reads the discriminator model, which trains "
                                          r"meanwhile: it runs on the training thread; drop workers"):
        Engine(tiny_config(rewards={"realism": {"workers": 2}}), tmp_path)
    with pytest.raises(ConfigError, match=r"rewards.realism\] chunk_size: expected an integer >= 0"):
        Engine(tiny_config(rewards={"realism": {"chunk_size": -1}}), tmp_path)
