"""SeqGAN's networks: an LSTM language model (oracle and generator) and the text CNN discriminator."""

import torch
from torch import nn
from torch.nn import functional as F

from rlgan_core.ops import linear_policy_gradient_loss, policy_gradient_loss


class LSTMPolicy(nn.Module):
    """An LSTM language model over ``vocab_size`` tokens that writes sequences of ``length``.

    As an rlgan generator it maps latents ``[N, length]`` (standard normal, one per token) to
    token sequences ``[N, length]``: token t is drawn from the policy by the inverse CDF at
    ``Phi(latent_t)``, so a fixed latent batch always gives the same samples.  ``logits``
    scores given sequences (teacher forcing), which is what MLE and policy-gradient steps need.
    Every sequence starts from the input token ``start_token``.
    """

    def __init__(self, vocab_size: int, length: int, embedding: int = 32, hidden: int = 32,
                 init_std: float = 0.1, start_token: int = 0):
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("length", length), ("embedding", embedding), ("hidden", hidden)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.vocab_size, self.length, self.start_token = vocab_size, length, start_token
        self.latent_dim = length
        self.embed = nn.Embedding(vocab_size, embedding)
        self.lstm = nn.LSTM(embedding, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab_size)
        for parameter in self.parameters():
            nn.init.normal_(parameter, std=init_std)

    def hidden_states(self, tokens: torch.Tensor) -> torch.Tensor:
        """The LSTM's states ``[N, T, hidden]`` before each token of ``tokens`` ``[N, T]``."""
        start = tokens.new_full((len(tokens), 1), self.start_token)
        hidden, _ = self.lstm(self.embed(torch.cat([start, tokens[:, :-1]], dim=1)))
        return hidden

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``[N, T, V]`` of ``tokens`` ``[N, T]``, each from its prefix."""
        return self.out(self.hidden_states(tokens))

    def policy_loss(self, tokens: torch.Tensor, advantages: torch.Tensor, entropy_coef: float = 0.0) -> torch.Tensor:
        """The policy-gradient loss of ``tokens`` ``[N, T]`` with per-token ``advantages`` ``[N, T]``
        (``rlgan_core.ops.linear_policy_gradient_loss`` on the output layer: the ``[N·T, V]``
        logits are never held whole)."""
        hidden = self.hidden_states(tokens).flatten(0, 1)
        return linear_policy_gradient_loss(hidden, self.out.weight, tokens.flatten(), advantages.flatten(),
                                           bias=self.out.bias, entropy_coef=entropy_coef)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.complete(latents.new_zeros((len(latents), 0), dtype=torch.long), latents)

    def complete(self, prefix: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """Finish the sequences ``prefix`` ``[N, t]`` with one token per latent of ``latents[:, t:]``;
        return ``[N, length]``."""
        tokens = [prefix]
        inputs = self.embed(torch.cat([prefix.new_full((len(prefix), 1), self.start_token), prefix], dim=1))
        state = None
        uniforms = torch.special.ndtr(latents.float())
        for t in range(prefix.shape[1], self.length):
            hidden, state = self.lstm(inputs, state)
            logits = self.out(hidden[:, -1])
            # inverse CDF on unnormalised probabilities: no softmax division needed
            cdf = (logits - logits.amax(dim=-1, keepdim=True)).exp_().cumsum_(dim=-1)
            token = torch.searchsorted(cdf, uniforms[:, t : t + 1] * cdf[:, -1:]).clamp_(max=self.vocab_size - 1)
            tokens.append(token)
            inputs = self.embed(token)
        return torch.cat(tokens, dim=1)

    def nll(self, tokens: torch.Tensor, chunk: int = 1000) -> float:
        """Mean negative log-likelihood per token of ``tokens`` under this model (nats)."""
        total = 0.0
        with torch.no_grad():
            for part in tokens.split(chunk):
                logits = self.logits(part).flatten(0, 1)
                ones = torch.ones(len(logits), device=logits.device)
                total += policy_gradient_loss(logits, part.flatten(), ones, reduction="sum").item()
        return total / tokens.numel()


class TextCNN(nn.Module):
    """SeqGAN's discriminator: embedding, one convolution per filter size with max-pooling over
    time, a highway layer, dropout, and one logit per sequence (real is positive)."""

    FILTER_SIZES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20)
    FILTER_COUNTS = (100, 200, 200, 200, 200, 100, 100, 100, 100, 100, 160, 160)

    def __init__(self, vocab_size: int, length: int, embedding: int = 64, filter_sizes=FILTER_SIZES,
                 filter_counts=FILTER_COUNTS, dropout: float = 0.25, l2: float = 0.2):
        super().__init__()
        if len(filter_sizes) != len(filter_counts):
            raise ValueError(f"filter_sizes ({len(filter_sizes)}) and filter_counts ({len(filter_counts)}) differ in length")
        if any(size > length for size in filter_sizes):
            raise ValueError(f"filter sizes {list(filter_sizes)} must not exceed the sequence length {length}")
        self.l2 = l2
        self.embed = nn.Embedding(vocab_size, embedding)
        self.convolutions = nn.ModuleList(nn.Conv1d(embedding, count, size) for size, count in zip(filter_sizes, filter_counts))
        width = sum(filter_counts)
        self.highway = nn.Linear(width, 2 * width)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(width, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens).transpose(1, 2)  # [N, embedding, T]
        features = torch.cat([F.relu(conv(x)).amax(dim=2) for conv in self.convolutions], dim=1)
        transform, gate = self.highway(features).chunk(2, dim=1)
        gate = torch.sigmoid(gate)
        features = gate * F.relu(transform) + (1 - gate) * features
        return self.out(self.dropout(features)).squeeze(1)

    def penalty(self) -> torch.Tensor:
        """L2 regularisation of the output layer, as in SeqGAN (``l2 * (|W|^2 + |b|^2) / 2``)."""
        return self.l2 * 0.5 * (self.out.weight.square().sum() + self.out.bias.square().sum())


def oracle_lstm(vocab_size: int, length: int, embedding: int, hidden: int, seed: int) -> LSTMPolicy:
    """A random LSTM with every parameter drawn from N(0, 1) by ``seed``: SeqGAN's oracle."""
    oracle = LSTMPolicy(vocab_size, length, embedding, hidden)
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in oracle.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=rng))
    return oracle.requires_grad_(False).eval()

