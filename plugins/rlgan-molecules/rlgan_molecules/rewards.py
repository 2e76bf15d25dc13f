"""Chemistry rewards: the base class third parties subclass, PMO's oracles, and ``score``.

A :class:`MoleculeReward` is an rlgan reward over SMILES policies' samples: it decodes each token
sequence with the run's vocabulary, canonicalises it with RDKit, calls ``score`` on the valid ones
only, and gives invalid ones 0.  A subclass implements ``score(self, smiles) -> list[float]`` and
registers through ``rlgan_register_rewards`` like any reward.  RDKit scoring is CPU-bound Python:
with ``processes`` > 1 the valid SMILES of a batch are split among that many worker processes
(started once, on first use, by the ``spawn`` method, so the reward must pickle).
"""

import multiprocessing
import weakref
from concurrent.futures import ProcessPoolExecutor

import torch

from rlgan_core import Reward, RewardContext

from .oracles import PMO_TASKS, oracle
from .smiles import canonical, to_molecule


class MoleculeReward(Reward):
    """Base class of chemistry rewards.  ``score`` receives canonical SMILES of valid molecules,
    never an invalid one, and returns one float per SMILES, larger is better.  ``processes``: how
    many worker processes score a batch (0 or 1: the training process does)."""

    processes: int = 0

    def score(self, smiles: list[str]) -> list[float]:
        raise NotImplementedError

    def score_smiles(self, smiles: list[str]) -> list[float]:
        """Scores of any SMILES: canonicalised, 0.0 for invalid ones, ``score`` for the rest."""
        canonical_forms = [canonical(s) for s in smiles]
        valid = [c for c in canonical_forms if c is not None]
        values = iter(self.score_in_processes(valid) if valid else [])
        out = [float(next(values)) if c is not None else 0.0 for c in canonical_forms]
        if next(values, None) is not None:
            raise ValueError(f"{type(self).__name__}.score returned more values than the {len(valid)} SMILES it got")
        return out

    def score_in_processes(self, smiles: list[str]) -> list[float]:
        """``score(smiles)``, split among the worker processes when there are any."""
        if self.processes <= 1 or len(smiles) < 2:
            return list(self.score(smiles))
        if getattr(self, "_pool", None) is None:
            self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"))
            weakref.finalize(self, self._pool.shutdown, cancel_futures=True)
        size = -(-len(smiles) // self.processes)
        chunks = [smiles[i : i + size] for i in range(0, len(smiles), size)]
        return [value for part in self._pool.map(self.score, chunks) for value in part]

    def __getstate__(self) -> dict:
        """What a worker process receives: everything but the pool (and no pool of its own)."""
        state = {key: value for key, value in self.__dict__.items() if key != "_pool"}
        return {**state, "processes": 0}

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

    def __init__(self, task: str, processes: int = 0):
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 0:
            raise ValueError(f"processes must be a non-negative integer, got {processes!r}")
        self.task, self.processes = task, processes
        self.function = oracle(task)

    def score(self, smiles: list[str]) -> list[float]:
        return [float(self.function(to_molecule(s))) for s in smiles]

    def __reduce__(self):
        return PMOOracle, (self.task,)  # a worker rebuilds the oracle from its name


def pmo_factory(task: str):
    """The factory registered under ``task``: its one option is ``processes``."""

    def factory(processes: int = 0) -> PMOOracle:
        return PMOOracle(task, processes)

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
