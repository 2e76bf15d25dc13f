"""rlgan-molecules: SMILES policies and chemistry rewards (PMO's oracles) for rlgan.

Registers the ``moses`` data source, the ``smiles_prior`` generator (a GRU policy, by default the
prior shipped with this plugin, pre-trained on MOSES by ``scripts/pretrain_prior.py``) and PMO's 20
RDKit-only oracles as rewards under PMO's names.  Third parties write chemistry rewards by
subclassing :class:`MoleculeReward`; :func:`score` scores SMILES with any registered one by name.
"""

from rlgan_core import hookimpl

from .budget import OracleBudget, auc_top_k
from .data import MosesData
from .model import PRIOR, SmilesPolicy, load_policy
from .oracles import PMO_TASKS
from .rewards import MoleculeReward, pmo_factory, score

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
