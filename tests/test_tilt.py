"""`rlgan tilt`: resampling a run's samples by exp(r/β) draws the KL-regularised target
p_ref·exp(r/β)/Z, checked where that target is known in closed form."""

import json
import math

import pytest
import torch
from helpers import rlgan

from rlgan_core.tilt import effective_sample_size, resample, tilt_rows, tilt_weights


def test_weights_and_effective_sample_size():
    rewards = torch.tensor([0.0, 0.0, 0.0, 0.0])
    assert effective_sample_size(tilt_weights(rewards, 1.0)) == pytest.approx(4.0)
    weights = tilt_weights(torch.tensor([0.0, math.log(3.0)]), 1.0)  # exp(r) = 1 and 3
    assert weights.tolist() == pytest.approx([0.25, 0.75])
    assert effective_sample_size(weights) == pytest.approx(1 / (0.25**2 + 0.75**2))
    assert effective_sample_size(tilt_weights(torch.tensor([0.0, 1.0]), 1e-4)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="beta must be positive"):
        tilt_weights(rewards, 0.0)


def test_resampling_draws_in_proportion_to_the_weights():
    weights = torch.tensor([0.1, 0.2, 0.7], dtype=torch.float64)
    counts = torch.bincount(resample(weights, 200_000, seed=1), minlength=3) / 200_000
    assert counts.tolist() == pytest.approx([0.1, 0.2, 0.7], abs=0.005)
    assert torch.equal(resample(weights, 50, seed=3), resample(weights, 50, seed=3))


@pytest.mark.parametrize("beta", [2.0, 1.0, 0.5])
def test_a_gaussian_tilted_by_a_linear_reward_is_the_shifted_gaussian(beta):
    # p_ref = N(0, 1), r(x) = x: p*(x) ∝ exp(-x²/2 + x/β) = N(1/β, 1), whose mean reward is 1/β
    samples = torch.randn(400_000, 1, generator=torch.Generator().manual_seed(0))

    def moments(x):
        return {"mean": float(x.mean()), "std": float(x.std())}

    reference, tilted = tilt_rows(samples, samples[:, 0], [beta], moments, seed=2)
    assert reference["mean"] == pytest.approx(0.0, abs=0.01) and math.isinf(reference["beta"])
    assert tilted["reward"] == pytest.approx(1 / beta, abs=0.03)
    assert tilted["mean"] == pytest.approx(1 / beta, abs=0.03) and tilted["std"] == pytest.approx(1.0, abs=0.03)
    if beta >= 1:  # n·E[w]²/E[w²] = n·exp(-1/β²); for smaller β the draws' estimate of E[w²] is heavy-tailed
        assert tilted["ess"] == pytest.approx(400_000 * math.exp(-1 / beta**2), rel=0.05)


def test_rlgan_tilt_raises_a_black_box_reward_of_a_trained_run(tmp_path):
    config = tmp_path / "ring.toml"
    config.write_text(
        '[run]\nname = "ring"\nsteps = 100\nbatch_size = 64\ndevice = "cpu"\n'
        '[data]\nname = "gaussians"\nlayout = "ring"\n'
        '[generator]\nname = "mlp_generator"\nlatent_dim = 2\nhidden = [32, 32]\noutput = "linear"\n'
        '[discriminator]\nname = "mlp_discriminator"\nhidden = [32, 32]\n'
        '[evaluation]\nevery = 100\nsamples = 200\n[checkpoint]\nevery = 100\n'
        '[logging]\nprogress = false\ntensorboard = false\n'
    )
    run = tmp_path / "run"
    rlgan("train", str(config), "--run-dir", str(run))
    out = rlgan("tilt", str(run), "--reward", "inside_box", "--option", "lower = [0.0, 0.0]",
                "--option", "upper=[3.0, 3.0]", "--beta", "1", "0.1", "-n", "2000",
                "--json", str(tmp_path / "tilt.json"), "-o", str(tmp_path / "frontier.png")).stdout
    assert "tilted by exp(inside_box / β)" in out
    rows = json.loads((tmp_path / "tilt.json").read_text())
    assert [row["beta"] for row in rows][1:] == [1.0, 0.1]
    assert rows[0]["reward"] < rows[1]["reward"] < rows[2]["reward"]  # a stronger tilt, more reward
    assert rows[0]["ess"] == 2000 > rows[1]["ess"] > rows[2]["ess"] >= 1
    assert (tmp_path / "frontier.png").read_bytes()[:4] == b"\x89PNG"
    rlgan("tilt", str(run), "--reward", "inside_box", "--option", "lower=[0.0, 0.0]", "--option", "upper=[3.0, 3.0]",
          "--beta", "0.5", "-n", "500", "-o", str(tmp_path / "tilted.png"))
    assert (tmp_path / "tilted.png").read_bytes()[:4] == b"\x89PNG"  # one β: the tilted samples
    for args, message in [(("--option", "lower"), "--option 'lower': write KEY=VALUE"),
                          (("--beta", "0"), "every β must be positive"),
                          (("--option", "lower=[0.0]"), "inside_box")]:
        wrong = rlgan("tilt", str(run), "--reward", "inside_box", *args, "-n", "100", check=False)
        assert wrong.returncode == 2 and message in wrong.stderr and "Traceback" not in wrong.stderr
