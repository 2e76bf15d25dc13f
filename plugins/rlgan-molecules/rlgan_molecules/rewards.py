"""Chemistry rewards: the base class third parties subclass, PMO's oracles, and ``score``.

A :class:`MoleculeReward` is an rlgan reward over SMILES policies' samples: it decodes each token
sequence with the run's vocabulary, canonicalises it with RDKit, calls ``score`` on the valid ones
only, and gives invalid ones 0.  A subclass implements ``score(self, smiles) -> list[float]`` and
registers through ``rlgan_register_rewards`` like any reward.
"""

import torch

from rlgan_core import Reward, RewardContext

from .oracles import PMO_TASKS, oracle
from .smiles import canonical, to_molecule


class MoleculeReward(Reward):
    """Base class of chemistry rewards.  ``score`` receives canonical SMILES of valid molecules,
    never an invalid one, and returns one float per SMILES, larger is better."""

    def score(self, smiles: list[str]) -> list[float]:
        raise NotImplementedError

    def score_smiles(self, smiles: list[str]) -> list[float]:
        """Scores of any SMILES: canonicalised, 0.0 for invalid ones, ``score`` for the rest."""
        canonical_forms = [canonical(s) for s in smiles]
        valid = [c for c in canonical_forms if c is not None]
        values = iter(self.score(valid) if valid else [])
        out = [float(next(values)) if c is not None else 0.0 for c in canonical_forms]
        if next(values, None) is not None:
            raise ValueError(f"{type(self).__name__}.score returned more values than the {len(valid)} SMILES it got")
        return out

    def __call__(self, samples: torch.Tensor, context: RewardContext) -> torch.Tensor:
        smiles = decode(samples, context)
        scores = self.score_smiles(smiles)
        if len(scores) != len(smiles):
            raise ValueError(f"{type(self).__name__}.score returned {len(scores)} values for {len(smiles)} SMILES")
        return torch.tensor(scores, dtype=torch.float32, device=samples.device)


def decode(samples: torch.Tensor, context: RewardContext) -> list[str]:
    """The SMILES of token sequences ``samples`` ``[N, T]``, by the vocabulary of the run's
    generator (or, failing that, of its data source)."""
    for holder in (context.generator, context.data):
        vocabulary = getattr(holder, "vocabulary", None)
        if vocabulary is not None:
            return vocabulary.decode_batch(samples)
    raise ValueError("a molecule reward needs a SMILES generator or data source (one with a vocabulary)")


class PMOOracle(MoleculeReward):
    """One of PMO's oracles (:data:`rlgan_molecules.oracles.PMO_TASKS`), by name."""

    def __init__(self, task: str):
        self.task = task
        self.function = oracle(task)

    def score(self, smiles: list[str]) -> list[float]:
        return [float(self.function(to_molecule(s))) for s in smiles]


def pmo_factory(task: str):
    """The factory registered under ``task``: a reward without options."""

    def factory() -> PMOOracle:
        return PMOOracle(task)

    factory.__doc__ = f"PMO's {task} oracle (GuacaMol's definition)."
    return factory


def score(task: str, smiles: list[str]) -> list[float]:
    """Score ``smiles`` with the registered molecule reward ``task`` (any installed plugin's, with
    its default options): canonicalised first, 0.0 for invalid SMILES."""
    from rlgan_core.plugins import registries

    reward = registries().rewards.get(task).factory()
    if not isinstance(reward, MoleculeReward):
        raise TypeError(f"reward {task!r} is not a molecule reward (a rlgan_molecules.MoleculeReward)")
    return reward.score_smiles(list(smiles))


__all__ = ["MoleculeReward", "PMOOracle", "PMO_TASKS", "score"]
