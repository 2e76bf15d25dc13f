"""The sample-quality options: the generator's weight average (EMA), the R1 penalty, spectral
normalisation, discriminator dropout and the generator judged by the discriminator in eval mode,
PacGAN's packing and maxout discriminator."""

import pytest
import torch

from rlgan_core.builtin.models import MaxoutDiscriminator, MLPDiscriminator, MLPGenerator
from rlgan_core.builtin.strategies import r1_penalty
from rlgan_core.checkpoint import list_checkpoints
from rlgan_core.config import parse_config
from rlgan_core.engine import Engine
from rlgan_core.errors import ConfigError
from rlgan_core.strategy import sample_model
from rlgan_core.testing import check_strategy, quick_config

from helpers import tiny_config


class TwoD:
    shape = (2,)


def ema_config(**run):
    return tiny_config(strategy={"name": "gan", "ema_decay": 0.9}, run=run)


def test_the_weight_average_follows_the_generator_and_is_what_evaluation_samples():
    engine = Engine(ema_config(steps=1), "unused")
    generator, average = engine.models["generator"], engine.models["generator_ema"]
    assert not any(p.requires_grad for p in average.parameters())
    before = {k: v.clone() for k, v in average.state_dict().items()}
    engine.train_step()
    # the first update uses the ramped decay min(0.9, 1/10) = 0.1
    for key, weight in generator.state_dict().items():
        torch.testing.assert_close(average.state_dict()[key], 0.1 * before[key] + 0.9 * weight)
    engine.train_step()
    assert any(not torch.equal(average.state_dict()[k], v) for k, v in generator.state_dict().items())
    with torch.no_grad():
        expected = sample_model(average, 7, 3, engine.device)
    torch.testing.assert_close(engine.generate(7, seed=3), expected)


def test_the_weight_average_is_saved_and_a_resumed_run_continues_it_exactly(tmp_path):
    check_strategy(quick_config(strategy={"name": "gan", "ema_decay": 0.9}), steps=20)  # every role, bitwise
    # sampling from a finished run's checkpoint (as `rlgan sample` does) uses the average
    finished = Engine(ema_config(), tmp_path)
    finished.run()
    reloaded = Engine(ema_config(), tmp_path)
    reloaded.load_checkpoint(list_checkpoints(tmp_path / "checkpoints")[-1])
    assert not torch.equal(finished.models["generator_ema"].net[0].weight, finished.models["generator"].net[0].weight)
    torch.testing.assert_close(reloaded.generate(5), finished.generate(5))
    with torch.no_grad():
        torch.testing.assert_close(reloaded.generate(5), sample_model(finished.models["generator_ema"], 5, 0, "cpu"))


def test_bad_quality_options_are_refused():
    with pytest.raises(ConfigError, match=r"\[strategy\] 'gan'.*ema_decay must lie in \[0, 1\)"):
        Engine(tiny_config(strategy={"name": "gan", "ema_decay": 1.0}), "unused")
    with pytest.raises(ConfigError, match="r1 must be >= 0"):
        Engine(tiny_config(strategy={"name": "gan", "r1": -1.0}), "unused")
    with pytest.raises(ValueError, match="pack"):
        MLPDiscriminator(TwoD(), pack=0)


def test_r1_penalty_of_a_linear_discriminator_is_half_its_squared_weight_norm():
    weight = torch.tensor([3.0, -4.0], requires_grad=True)
    real = torch.randn(6, 2, requires_grad=True)
    penalty = r1_penalty(real @ weight + 1.0, real)
    assert penalty.item() == pytest.approx(12.5)  # ||w||^2 / 2 for every sample
    assert penalty.requires_grad  # it trains the discriminator


def test_lazy_r1_applies_the_penalty_every_few_steps_at_that_many_times_the_weight():
    def discriminator_after(steps, **strategy):
        engine = Engine(tiny_config(strategy={"name": "gan", **strategy}), "unused")
        for _ in range(steps):
            engine.train_step()
        return engine.discriminator.state_dict()

    def same(a, b):
        return all(torch.equal(a[key], b[key]) for key in a)

    lazy = discriminator_after(1, r1=1.0, r1_every=3)  # step 0 carries the penalty, times 3
    assert same(lazy, discriminator_after(1, r1=3.0)) and not same(lazy, discriminator_after(1, r1=1.0))
    with pytest.raises(ConfigError, match="r1_every must be an integer >= 1, got 0"):
        Engine(tiny_config(strategy={"name": "gan", "r1": 1.0, "r1_every": 0}), "unused")
    check_strategy(quick_config(strategy={"name": "gan", "r1": 1.0, "r1_every": 3}), steps=10)


def test_a_run_with_r1_and_spectral_norm_trains_and_resumes_exactly():
    config = quick_config(strategy={"name": "gan", "r1": 1.0}, discriminator={"spectral_norm": True})
    assert any("parametrizations" in key for key in Engine(parse_config(config), "unused").discriminator.state_dict())
    check_strategy(config, steps=10)


def test_discriminator_dropout_drops_in_training_only_and_keeps_the_old_layout_at_zero():
    torch.manual_seed(0)
    plain, dropped = MLPDiscriminator(TwoD()), MLPDiscriminator(TwoD(), dropout=0.5)
    assert plain.state_dict().keys() == dropped.state_dict().keys()  # checkpoints of either load into the other
    x = torch.randn(64, 2)
    assert not torch.equal(dropped(x), dropped(x))  # a fresh mask per call while training
    dropped.eval()
    torch.testing.assert_close(dropped(x), dropped(x))
    with pytest.raises(ValueError, match=r"dropout must lie in \[0, 1\), got 1.0"):
        MLPDiscriminator(TwoD(), dropout=1.0)
    check_strategy(quick_config(strategy={"name": "gan", "r1": 1.0}, discriminator={"dropout": 0.3}), steps=10)


@pytest.mark.parametrize("eval_discriminator", [False, True])
def test_eval_discriminator_judges_the_generators_samples_in_eval_mode_only(eval_discriminator):
    strategy = {"name": "gan", "eval_discriminator": eval_discriminator}
    engine = Engine(tiny_config(strategy=strategy, discriminator={"dropout": 0.3}), "unused")
    discriminator, modes = engine.discriminator, []
    forward = discriminator.forward
    discriminator.forward = lambda x: (modes.append(discriminator.training), forward(x))[1]
    engine.train_step()
    engine.train_step()
    # each step: the discriminator's update on real and generated samples, then the generator's
    assert modes == [True, not eval_discriminator] * 2
    assert discriminator.training


def test_eval_discriminator_resumes_exactly_and_refuses_bad_values():
    check_strategy(quick_config(strategy={"name": "gan", "eval_discriminator": True}, discriminator={"dropout": 0.3}),
                   steps=10)
    with pytest.raises(ConfigError, match="option 'eval_discriminator' must be true or false, got 'yes'"):
        Engine(tiny_config(strategy={"name": "gan", "eval_discriminator": "yes"}), "unused")


@pytest.mark.parametrize("model", [MLPDiscriminator, MaxoutDiscriminator])
def test_packing_gives_each_sample_its_packs_logit(model):
    torch.manual_seed(0)
    packed = model(TwoD(), pack=4)
    x = torch.randn(10, 2)  # two packs and a partial one, completed with samples 0 and 1
    logits = packed(x)
    assert logits.shape == (10,)
    expected = packed.net(torch.cat([x, x[:2]]).view(3, 8)).squeeze(1)
    torch.testing.assert_close(logits, expected.repeat_interleave(4)[:10])
    single = model(TwoD(), pack=1)
    assert single(x).shape == (10,)


def test_maxout_takes_the_largest_piece():
    torch.manual_seed(0)
    layer = MaxoutDiscriminator(TwoD(), hidden=[3], pieces=5).net[0]
    x = torch.randn(4, 2)
    pieces = (x @ layer.linear.weight.T + layer.linear.bias).view(4, 3, 5)
    torch.testing.assert_close(layer(x), pieces.max(2).values)


def test_pacgan_generator_options():
    generator = MLPGenerator(TwoD(), latent_dim=2, hidden=[400] * 4, output="linear", activation="relu",
                             batch_norm=True)
    kinds = [type(layer).__name__ for layer in generator.net]
    assert kinds[:3] == ["Linear", "BatchNorm1d", "ReLU"] and kinds[-1] == "Linear"
    assert generator(torch.randn(8, 2)).shape == (8, 2)
    with pytest.raises(ValueError, match="activation"):
        MLPGenerator(TwoD(), activation="gelu")


@pytest.mark.parametrize("schedule,half_way", [("none", 1.0), ("linear", 0.5), ("cosine", 0.5)])
def test_learning_rates_follow_the_decay_schedule(schedule, half_way):
    engine = Engine(tiny_config(strategy={"name": "gan", "lr_decay": schedule}, run={"steps": 20}), "unused")
    rates = {}
    for step in (0, 10, 15):
        engine.state.step = step
        engine.train_step()
        rates[step] = {role: optimizer.param_groups[0]["lr"] for role, optimizer in engine.context.optimizers.items()}
    base = {role: engine.config.optimizer.lr(role) for role in rates[0]}
    assert rates[0] == base
    for role in base:
        assert rates[10][role] == pytest.approx(base[role] * half_way)
    if schedule == "linear":
        assert rates[15]["generator"] == pytest.approx(base["generator"] * 0.25)
    with pytest.raises(ConfigError, match="lr_decay"):
        Engine(tiny_config(strategy={"name": "gan", "lr_decay": "step"}), "unused")


def test_the_weight_average_averages_batch_norm_statistics():
    config = tiny_config(strategy={"name": "gan", "ema_decay": 0.5}, generator={"batch_norm": True})
    engine = Engine(config, "unused")
    generator, average = engine.models["generator"], engine.models["generator_ema"]
    for _ in range(12):  # past the ramp: the decay is 0.5 from the ninth update on
        before = {k: v.clone() for k, v in average.state_dict().items()}
        engine.train_step()
    for key, value in generator.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(average.state_dict()[key], 0.5 * before[key] + 0.5 * value)
        else:
            assert torch.equal(average.state_dict()[key], value)
    assert any("running_mean" in key for key in generator.state_dict())
