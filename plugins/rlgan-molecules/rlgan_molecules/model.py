"""The SMILES policy: a GRU language model over SMILES tokens, read as a policy over sequences.

``sample`` writes molecules token by token; ``log_likelihood`` scores given ones (teacher forcing);
``policy_loss`` is the policy-gradient loss of given sequences, through
``rlgan_core.ops.linear_policy_gradient_loss`` on the output layer, so the ``[N·T, V]`` logits are
never held whole.  It is also an rlgan policy (``rlgan_core.is_policy``): latents ``[N, max_length]``
write sequences by the inverse CDF, and ``distribution`` gives their log-likelihood, entropy and KL,
so the core ``reinforce`` and ``ppo`` strategies and ``seqgan`` (with ``logits`` and ``complete``)
train it like any policy.  A policy is saved as one safetensors file whose metadata holds its vocabulary
and sizes (:func:`save_policy`, :func:`load_policy`); the prior shipped with this plugin is one.
"""

import json
from pathlib import Path

import torch
from torch import nn

from rlgan_core.ops import linear_policy_gradient_loss

from .smiles import Vocabulary

IGNORE = -100  # target id of padding positions
PRIOR = Path(__file__).parent / "assets" / "prior.safetensors"


class SmilesPolicy(nn.Module):
    """A ``layers``-layer GRU (``hidden`` units, ``embedding``-wide token embedding) over a
    vocabulary; samples are ``[N, max_length]`` token ids, padded after their ``<end>``."""

    def __init__(self, vocabulary: Vocabulary, embedding: int = 128, hidden: int = 256, layers: int = 3,
                 max_length: int = 100):
        super().__init__()
        for name, value in (("embedding", embedding), ("hidden", hidden), ("layers", layers), ("max_length", max_length)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.vocabulary, self.max_length = vocabulary, max_length
        self.latent_dim = max_length  # one standard normal latent per token written
        self.sizes = {"embedding": embedding, "hidden": hidden, "layers": layers, "max_length": max_length}
        self.embed = nn.Embedding(len(vocabulary), embedding)
        self.gru = nn.GRU(embedding, hidden, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden, len(vocabulary))

    # --- scoring given sequences ------------------------------------------------------------------

    def hidden_states(self, tokens: torch.Tensor) -> torch.Tensor:
        """The GRU's states ``[N, T, hidden]`` before each token of ``tokens`` ``[N, T]``."""
        start = tokens.new_full((len(tokens), 1), self.vocabulary.start)
        hidden, _ = self.gru(self.embed(torch.cat([start, tokens[:, :-1]], dim=1)))
        return hidden

    def targets(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens`` with padding replaced by the ignored id: what each position predicts."""
        return tokens.masked_fill(tokens == self.vocabulary.pad, IGNORE)

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``[N, T, V]`` of ``tokens`` ``[N, T]``, each from its prefix."""
        return self.out(self.hidden_states(tokens))

    def log_likelihood(self, tokens: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        """log p(sequence) ``[N]``: the sum of each token's log-probability, ``<end>`` included
        (``hidden``: the sequences' ``hidden_states`` when the caller has them already)."""
        logits = self.out(self.hidden_states(tokens) if hidden is None else hidden)
        log_p = torch.log_softmax(logits.float(), dim=-1).gather(2, tokens.unsqueeze(2)).squeeze(2)
        return log_p.masked_fill(tokens == self.vocabulary.pad, 0).sum(1)

    def policy_loss(self, tokens: torch.Tensor, advantages: torch.Tensor, entropy_coef: float = 0.0,
                    hidden: torch.Tensor | None = None) -> torch.Tensor:
        """``-Σ advantage · log p(token)`` over the tokens of ``tokens`` ``[N, T]`` (summed, not
        averaged), advantages per sequence ``[N]`` or per token ``[N, T]``; ``hidden``: the
        sequences' ``hidden_states`` when the caller has them already."""
        if advantages.dim() == 1:
            advantages = advantages.unsqueeze(1).expand(tokens.shape)
        hidden = self.hidden_states(tokens) if hidden is None else hidden
        return linear_policy_gradient_loss(hidden.flatten(0, 1), self.out.weight, self.targets(tokens).flatten(),
                                           advantages.flatten().to(hidden.dtype), bias=self.out.bias,
                                           entropy_coef=entropy_coef, ignore_index=IGNORE, reduction="sum")

    # --- writing new sequences --------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` new sequences ``[n, max_length]``, token by token from the policy, drawn with
        ``generator``; each row is padded after its ``<end>`` (a row that reaches ``max_length``
        has none)."""
        device = self.out.weight.device
        vocabulary = self.vocabulary
        tokens = torch.full((n, self.max_length), vocabulary.pad, dtype=torch.long, device=device)
        token = torch.full((n,), vocabulary.start, dtype=torch.long, device=device)
        running = torch.ones(n, dtype=torch.bool, device=device)
        state = None
        for t in range(self.max_length):
            hidden, state = self.gru(self.embed(token).unsqueeze(1), state)
            probabilities = torch.softmax(self.out(hidden[:, 0]).float(), dim=-1)
            token = torch.multinomial(probabilities, 1, generator=generator).squeeze(1)
            tokens[:, t] = torch.where(running, token, vocabulary.pad)
            running &= token != vocabulary.end
            if not running.any():
                break
        return tokens

    @torch.no_grad()
    def complete(self, prefix: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """Finish the sequences ``prefix`` ``[N, t]`` with one token per latent of ``latents[:, t:]``
        (standard normal; a token is drawn by the inverse CDF at ``Φ(latent)``), padded after
        ``<end>``; return ``[N, max_length]``.  Fixed latents always write the same sequences."""
        vocabulary, n, start = self.vocabulary, len(prefix), prefix.shape[1]
        tokens = torch.full((n, self.max_length), vocabulary.pad, dtype=torch.long, device=prefix.device)
        tokens[:, :start] = prefix
        running = ~((prefix == vocabulary.end) | (prefix == vocabulary.pad)).any(1)
        uniforms = torch.special.ndtr(latents.float())
        token, state = prefix.new_full((n,), vocabulary.start), None
        if start:  # the state before the prefix's last token, which is the next input
            inputs = torch.cat([token.unsqueeze(1), prefix[:, :-1]], 1)
            token, (_, state) = prefix[:, -1], self.gru(self.embed(inputs))
        for t in range(start, self.max_length):
            if not running.any():
                break
            hidden, state = self.gru(self.embed(token).unsqueeze(1), state)
            logits = self.out(hidden[:, 0]).float()
            cdf = (logits - logits.amax(-1, keepdim=True)).exp_().cumsum_(-1)
            token = torch.searchsorted(cdf, uniforms[:, t : t + 1] * cdf[:, -1:]).squeeze(1).clamp_(max=len(vocabulary) - 1)
            tokens[:, t] = torch.where(running, token, vocabulary.pad)
            running &= token != vocabulary.end
        return tokens

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """Sequences ``[N, max_length]`` written from latents ``[N, max_length]`` (rlgan's generator)."""
        return self.complete(latents.new_zeros((len(latents), 0), dtype=torch.long), latents)

    def distribution(self, tokens: torch.Tensor) -> "TokenSequences":
        """The policy as a distribution over sequences, holding ``tokens``, the ones the latents wrote."""
        return TokenSequences(self, tokens)

    def sample(self, n: int, seed: int) -> torch.Tensor:
        """``n`` sequences drawn from ``seed`` alone (rlgan's generator contract)."""
        return self.generate(n, torch.Generator(self.out.weight.device).manual_seed(seed))

    def smiles(self, tokens: torch.Tensor) -> list[str]:
        return self.vocabulary.decode_batch(tokens)


class TokenSequences(torch.distributions.Distribution):
    """A SMILES policy as a ``torch.distributions`` object over whole sequences ``[N, T]``.

    ``sample()`` returns the sequences ``forward`` wrote from the run's latents (the latents are the
    policy's randomness, so those are draws of it); ``log_prob`` is their log-likelihood, with
    gradients to the policy; ``entropy()`` is the sum of the per-token entropies along the held
    sequences, and the KL to another policy the sum of the per-token KLs along them: by the chain
    rule, unbiased estimates of the sequence-level entropy and KL."""

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, policy: SmilesPolicy, tokens: torch.Tensor):
        self.policy, self.tokens = policy, tokens
        super().__init__(batch_shape=tokens.shape[:1], event_shape=tokens.shape[1:], validate_args=False)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        if tuple(sample_shape):
            raise ValueError("TokenSequences holds one draw per row; write more sequences with more latents")
        return self.tokens

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.policy.log_likelihood(value)

    def token_log_probs(self) -> torch.Tensor:
        """Log-probabilities ``[N, T, V]`` of the next token along the held sequences."""
        return torch.log_softmax(self.policy.logits(self.tokens).float(), dim=-1)

    def along(self, per_position: torch.Tensor) -> torch.Tensor:
        """The sum over each held sequence's positions (``<end>`` included, padding not)."""
        return per_position.masked_fill(self.tokens == self.policy.vocabulary.pad, 0).sum(1)

    def entropy(self) -> torch.Tensor:
        log_p = self.token_log_probs()
        return self.along(-(log_p.exp() * log_p).sum(-1))


@torch.distributions.kl.register_kl(TokenSequences, TokenSequences)
def _kl_token_sequences(p: TokenSequences, q: TokenSequences) -> torch.Tensor:
    """KL(p ‖ q) along p's sequences: the sum of the per-token KLs."""
    log_p = p.token_log_probs()
    log_q = torch.log_softmax(q.policy.logits(p.tokens).float(), dim=-1)
    return p.along((log_p.exp() * (log_p - log_q)).sum(-1))


def save_policy(policy: SmilesPolicy, path: str | Path, **notes) -> None:
    """Save ``policy``'s weights, vocabulary and sizes (and any ``notes``) as one safetensors file."""
    from safetensors.torch import save_file

    metadata = {"vocabulary": json.dumps(policy.vocabulary.tokens), "sizes": json.dumps(policy.sizes),
                "notes": json.dumps(notes)}
    state = {key: value.detach().cpu().contiguous() for key, value in policy.state_dict().items()}
    save_file(state, str(path), metadata=metadata)


def load_policy(path: str | Path = PRIOR, **overrides) -> SmilesPolicy:
    """The policy saved at ``path`` (by default the shipped prior); ``overrides`` change sizes
    that do not touch the weights (``max_length``)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no SMILES policy at {path}")
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata() or {}
    if "vocabulary" not in metadata or "sizes" not in metadata:
        raise ValueError(f"{path} is not a SMILES policy (its metadata has no vocabulary and sizes)")
    vocabulary = Vocabulary(json.loads(metadata["vocabulary"]))
    policy = SmilesPolicy(vocabulary, **{**json.loads(metadata["sizes"]), **overrides})
    policy.load_state_dict(load_file(str(path)))
    return policy


def policy_notes(path: str | Path = PRIOR) -> dict:
    """The notes saved with a policy (how the shipped prior was trained, its metrics)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        return json.loads((handle.metadata() or {}).get("notes", "{}"))
