"""SeqGAN's synthetic data: sequences drawn from a random LSTM, which also judges generated ones."""

import torch

from rlgan_core import DataSource

from .models import LSTMPolicy, oracle_lstm


class Oracle(DataSource):
    """``sequences`` token sequences of ``length`` over ``vocab_size`` tokens, sampled from a
    random LSTM oracle (every parameter from N(0, 1), drawn by ``seed``), plus
    ``test_sequences`` held-out ones.

    Metric: ``nll_oracle``, the oracle's mean negative log-likelihood per token of generated
    sequences (lower is better; the oracle's own samples score its entropy rate).
    """

    def __init__(self, vocab_size: int = 5000, length: int = 20, embedding: int = 32, hidden: int = 32,
                 sequences: int = 10000, test_sequences: int = 10000, seed: int = 88):
        for name, value in (("sequences", sequences), ("test_sequences", test_sequences)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.vocab_size, self.length = vocab_size, length
        self.shape = (length,)
        self.oracle: LSTMPolicy = oracle_lstm(vocab_size, length, embedding, hidden, seed)
        rng = torch.Generator().manual_seed(seed + 1)
        latents = torch.randn(sequences + test_sequences, length, generator=rng)
        with torch.no_grad():
            tokens = torch.cat([self.oracle(part) for part in latents.split(2000)])
        self.train, self.test = tokens[:sequences], tokens[sequences:]

    def tensors(self):
        return {"x": self.train}

    def metrics(self, samples):
        return {"nll_oracle": self.oracle.nll(samples)}
