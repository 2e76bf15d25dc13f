import torch

from rlgan_core.plugins import describe_plugins, registries
from rlgan_core.testing import check_reward
from rlgan_novelty import Novelty


def test_registered_through_the_entry_point():
    entry = registries().rewards.get("novelty")
    assert entry.factory is Novelty
    listed = {plugin["name"]: plugin for plugin in describe_plugins()}
    assert listed["novelty"]["distribution"] == "rlgan-novelty"
    assert listed["novelty"]["rewards"] == ["novelty"]


def test_collapsed_batch_scores_lower_than_spread_batch():
    reward = Novelty()
    collapsed = torch.zeros(16, 4) + 0.01 * torch.randn(16, 4)
    spread = torch.randn(16, 4)
    assert reward(collapsed, None).mean() < reward(spread, None).mean()


def test_gradient_pushes_samples_apart():
    samples = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0]], requires_grad=True)
    Novelty()(samples, None).sum().backward()
    assert samples.grad[0, 0] < 0 < samples.grad[1, 0]


def test_the_reward_keeps_the_contract():
    check_reward(Novelty())
    check_reward(Novelty(neighbours=3))
