import json
import tomllib
from pathlib import Path

import pytest
import torch

from rlgan_core import RewardContext
from rlgan_core.checkpoint import list_checkpoints
from rlgan_core.config import parse_config
from rlgan_core.engine import Engine
from rlgan_seqgan.models import LSTMPolicy, TextCNN
from rlgan_seqgan.oracle import Oracle
from rlgan_seqgan.rewards import Rollout, TokenFrequency

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def quick_config(**changes):
    """The quick config on the CPU, quietly, with some tables changed (``section={key: value}``)."""
    raw = tomllib.loads((CONFIGS / "seqgan_oracle_quick.toml").read_text())
    raw["run"]["device"] = "cpu"
    raw["logging"].update(progress=False, tensorboard=False)
    for section, values in changes.items():
        raw[section].update(values)
    return parse_config(raw)


def small_setup(vocab=40, length=8):
    torch.manual_seed(0)
    data = Oracle(vocab_size=vocab, length=length, sequences=64, test_sequences=16, seed=3)
    generator = LSTMPolicy(vocab, length)
    discriminator = TextCNN(vocab, length, embedding=8, filter_sizes=[1, 3], filter_counts=[4, 4])
    return data, generator, discriminator


def context(data, generator, discriminator, objective=None):
    return RewardContext(0, generator, discriminator, None, None, {}, data, torch.device("cpu"), objective)


def test_oracle_is_reproducible_from_its_seed():
    first, again, other = (Oracle(vocab_size=100, length=10, sequences=50, test_sequences=10, seed=s) for s in (7, 7, 8))
    assert torch.equal(first.train, again.train) and torch.equal(first.test, again.test)
    assert not torch.equal(first.train, other.train)
    for a, b in zip(first.oracle.parameters(), again.oracle.parameters()):
        assert torch.equal(a, b)
    assert first.train.shape == (50, 10) and first.train.dtype == torch.long
    assert 0 <= int(first.train.min()) and int(first.train.max()) < 100
    # the oracle's own samples score its entropy rate: far below what a uniform policy earns
    assert first.metrics(first.test)["nll_oracle"] < first.metrics(torch.randint(100, (200, 10)))["nll_oracle"]


def test_rollout_rewards_are_per_token_and_lie_in_unit_interval():
    data, generator, discriminator = small_setup()
    samples = generator(torch.randn(12, data.length))
    rewards = Rollout(rollouts=3)(samples, context(data, generator, discriminator))
    assert rewards.shape == (12, data.length)
    assert rewards.min() >= 0 and rewards.max() <= 1
    # the last token's reward is the discriminator's judgement of the sequence itself
    discriminator.eval()
    torch.testing.assert_close(rewards[:, -1], torch.sigmoid(discriminator(samples)))
    # ORGAN: with λ = 0 only the objective counts, here the share of token 0 in each completion
    frequency = TokenFrequency(token=0)
    organ = Rollout(rollouts=3, discriminator_weight=0.0)(
        samples, context(data, generator, discriminator, objective=lambda y: frequency(y, None))
    )
    torch.testing.assert_close(organ[:, -1], frequency(samples, None))
    assert organ.min() >= 0 and organ.max() <= 1


def test_rollout_errors_and_state():
    with pytest.raises(ValueError, match="rollouts must be a positive integer"):
        Rollout(rollouts=0)
    data, generator, discriminator = small_setup()
    samples = generator(torch.randn(4, data.length))
    with pytest.raises(ValueError, match="no other reward is configured"):
        Rollout(discriminator_weight=0.5)(samples, context(data, generator, discriminator))
    with pytest.raises(ValueError, match="token sequences"):
        Rollout()(torch.randn(4, data.length), context(data, generator, discriminator))
    # the delayed rollout policy survives a checkpoint
    reward = Rollout(rollouts=2, update_rate=0.5)
    reward(samples, context(data, generator, discriminator))
    with torch.no_grad():
        generator.out.bias.add_(1.0)
    reward(samples, context(data, generator, discriminator))
    restored = Rollout(rollouts=2, update_rate=0.5)
    restored.load_state_dict(reward.state_dict())
    restored._follow(generator)
    reward._follow(generator)
    for a, b in zip(reward.policy.parameters(), restored.policy.parameters()):
        torch.testing.assert_close(a, b)


def test_quick_config_trains_below_a_random_policy(tmp_path):
    summary = Engine(quick_config(), tmp_path).run()
    assert summary["nll_oracle"] < summary["nll_oracle_initial"] - 0.5
    assert summary["nll_oracle_mle"] < summary["nll_oracle_initial"]
    assert summary["nll_test"] < summary["nll_test_initial"]
    assert (tmp_path / "nll_oracle.png").stat().st_size > 0
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any("reward/rollout" in record for record in logged)  # the adversarial phase ran


def token_share(engine, token, n=1000):
    return float((engine.generate(n, seed=123) == token).float().mean())


def test_an_organ_objective_moves_its_statistic(tmp_path):
    """λ = 0: the rollouts score only the share of one token; adversarial epochs raise that share."""
    options = tomllib.loads((CONFIGS / "seqgan_oracle_quick.toml").read_text())["data"]
    options.pop("name")
    token = int(Oracle(**options).train.flatten().mode().values)  # the data's most common token
    config = quick_config(
        strategy={"generator_updates": 3},
        loss={"baseline": "mean"},
        rewards={"rollout": {"rollouts": 2, "discriminator_weight": 0.0}, "token_frequency": {"token": token}},
    )
    engine = Engine(config, tmp_path)
    steps = config.run.steps
    config.run.steps = engine.strategy.pretrain_steps
    engine.run()
    before = token_share(engine, token)
    config.run.steps = steps
    engine.run()
    after = token_share(engine, token)
    assert after > before + 0.01, (before, after)


def test_a_resumed_run_ends_with_the_same_weights(tmp_path):
    """Stop inside the adversarial phase, resume from the checkpoint: same weights as straight through."""
    small = dict(
        run={"steps": 5},
        strategy={"generator_pretrain_epochs": 1, "discriminator_pretrain_rounds": 1, "discriminator_samples": 64},
        data={"sequences": 256, "test_sequences": 64},
        rewards={"rollout": {"rollouts": 2}},
        evaluation={"every": 5, "samples": 64},
        checkpoint={"every": 1, "keep": 1},
    )
    straight = Engine(quick_config(**small), tmp_path / "straight")
    straight.run()
    stopped = quick_config(**small)
    stopped.run.steps = 4
    Engine(stopped, tmp_path / "resumed").run()
    resumed = Engine(quick_config(**small), tmp_path / "resumed")
    resumed.load_checkpoint(list_checkpoints(tmp_path / "resumed" / "checkpoints")[-1])
    assert resumed.state.step == 4 and resumed.strategy.phase(3) == "adversarial"
    resumed.run()
    for module in ("generator", "discriminator"):
        mine, theirs = getattr(straight, module).state_dict(), getattr(resumed, module).state_dict()
        for key in mine:
            assert torch.equal(mine[key], theirs[key]), (module, key)


DATA_PARALLEL = """
[run]
name = "seqgan_ddp"
device = "cpu"
steps = 4
batch_size = {batch}
[strategy]
name = "seqgan"
generator_pretrain_epochs = 1
discriminator_pretrain_rounds = 1
discriminator_rounds = 1
discriminator_epochs = 1
discriminator_samples = 128
[data]
name = "oracle"
vocab_size = 200
length = 10
sequences = 512
test_sequences = 64
[generator]
name = "lstm_policy"
[discriminator]
name = "cnn_text"
embedding = 16
filter_sizes = [1, 3, 5]
filter_counts = [8, 8, 8]
dropout = 0.0            # dropout masks are each process's own draw
[optimizer]
generator_lr = 0.01
discriminator_lr = 1e-3
[loss]
baseline = "mean"
[rewards.rollout]
rollouts = 3
[evaluation]
every = 4
samples = 64
[checkpoint]
every = 4
[logging]
progress = false
tensorboard = false
"""


def test_two_processes_train_the_model_of_one_with_the_doubled_batch(tmp_path):
    """MLE epochs, discriminator rounds and adversarial epochs (rollouts, rewards and baselines over
    the global batch) under --nproc 2 with batch 16 end where one process with batch 32 does."""
    import subprocess
    import sys

    from safetensors.torch import load_file

    tensors = {}
    for name, batch, nproc in (("two", 16, "2"), ("one", 32, "1")):
        config = tmp_path / f"{name}.toml"
        config.write_text(DATA_PARALLEL.format(batch=batch))
        subprocess.run([sys.executable, "-m", "rlgan_core", "train", str(config), "--run-dir", str(tmp_path / name),
                        "--nproc", nproc], check=True, capture_output=True, text=True, timeout=600)
        tensors[name] = load_file(list_checkpoints(tmp_path / name / "checkpoints")[-1] / "tensors.safetensors")
    compared = [key for key in tensors["one"] if key.startswith(("generator.", "discriminator.", "reward.rollout."))]
    assert any(key.startswith("reward.rollout.") for key in compared)  # the adversarial phase ran
    # float tolerance: sums over other batch shapes differ in the last bits, and Adam scales up the
    # differences of near-zero gradients (measured: 7e-5 at most); a rollout that drew other noise
    # than one process would moves the weights by about the learning rate, 1e-2
    for key in compared:
        torch.testing.assert_close(tensors["two"][key], tensors["one"][key], rtol=1e-3, atol=5e-4, msg=key)
