"""rlgan-molecules: SMILES policies and chemistry rewards (PMO's oracles) for rlgan.

Registers the ``moses`` data source, the ``smiles_prior`` generator (a GRU policy, by default the
prior shipped with this plugin, pre-trained on MOSES by ``scripts/pretrain_prior.py``) and PMO's 20
RDKit-only oracles as rewards under PMO's names, and the ``reinvent`` and ``prior_sampling``
strategies, which spend PMO's oracle budget and add its figures to ``summary.json``.  Third
parties write chemistry rewards by subclassing :class:`MoleculeReward`; :func:`score` scores
SMILES with any registered one by name.
"""

import csv

from rlgan_core import hookimpl

from .budget import OracleBudget, auc_top_k
from .data import MosesData
from .model import PRIOR, SmilesPolicy, load_policy
from .oracles import PMO_TASKS
from .rewards import MoleculeReward, pmo_factory, score
from .strategies import BudgetedSampling, Reinvent

__all__ = ["MoleculeReward", "OracleBudget", "PMO_TASKS", "SmilesPolicy", "auc_top_k", "load_policy", "score"]


def smiles_prior(data, path: str = "", max_length: int = 100) -> SmilesPolicy:
    """The SMILES policy saved at ``path`` (by default the shipped prior)."""
    return load_policy(path or PRIOR, max_length=max_length)


@hookimpl
def rlgan_register_data(register):
    register("moses", MosesData)


@hookimpl
def rlgan_register_models(register):
    register("smiles_prior", smiles_prior)


@hookimpl
def rlgan_register_rewards(register):
    for task in PMO_TASKS:
        register(task, pmo_factory(task))


@hookimpl
def rlgan_register_strategies(register):
    register("reinvent", Reinvent)
    register("prior_sampling", BudgetedSampling)


@hookimpl
def rlgan_train_end(engine, summary):
    """PMO's figures into the summary; every scored molecule, in call order, to ``scored.csv``;
    the best 24 drawn in ``best_molecules.png``."""
    if isinstance(engine.strategy, BudgetedSampling):
        summary.update(engine.strategy.report())
        with open(engine.run_dir / "scored.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["call", "smiles", "score"])
            writer.writerows((call, s, value) for call, (s, value) in enumerate(engine.strategy.budget.scores.items(), 1))
        top = engine.strategy.budget.top(24)
        if top:
            from .pictures import draw_molecules

            draw_molecules([s for _, s in top], engine.run_dir / "best_molecules.png",
                           legends=[f"{value:.3f}" for value, _ in top])
