"""The ``moses`` data source: MOSES's training SMILES as token sequences of the prior's vocabulary."""

import torch

from rlgan_core import DataSource

from .model import PRIOR, load_policy
from .smiles import canonical, quiet_rdkit, read_moses


class MosesData(DataSource):
    """The first ``limit`` MOSES training SMILES, encoded with the vocabulary of the policy at
    ``vocabulary_from`` (by default the shipped prior), padded to ``length`` tokens (``length`` and
    ``vocab_size`` size sequence discriminators such as rlgan-seqgan's ``cnn_text``).  Its metrics
    of generated sequences: validity, uniqueness and novelty against these SMILES."""

    def __init__(self, limit: int = 10_000, length: int = 100, vocabulary_from: str = ""):
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        quiet_rdkit()
        self.vocabulary = load_policy(vocabulary_from or PRIOR).vocabulary
        self.smiles = read_moses("train", limit=limit)
        self.shape, self.length, self.vocab_size = (length,), length, len(self.vocabulary)
        self.x = self.vocabulary.encode_batch(self.smiles, length)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"x": self.x}

    def metrics(self, samples: torch.Tensor) -> dict[str, float]:
        forms = [canonical(s) for s in self.vocabulary.decode_batch(samples)]
        valid = [f for f in forms if f is not None]
        unique = set(valid)
        known = {canonical(s) for s in self.smiles}
        return {"validity": len(valid) / len(forms), "uniqueness": len(unique) / max(1, len(valid)),
                "novelty": len(unique - known) / max(1, len(unique))}

    def render(self, samples, path) -> None:
        from .pictures import draw_molecules

        draw_molecules(self.vocabulary.decode_batch(samples[:24]), path)
