"""The SMILES policy: a GRU language model over SMILES tokens, read as a policy over sequences.

``sample`` writes molecules token by token; ``log_likelihood`` scores given ones (teacher forcing);
``policy_loss`` is the policy-gradient loss of given sequences, through
``rlgan_core.ops.linear_policy_gradient_loss`` on the output layer, so the ``[N·T, V]`` logits are
never held whole.  A policy is saved as one safetensors file whose metadata holds its vocabulary
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

    def sample(self, n: int, seed: int) -> torch.Tensor:
        """``n`` sequences drawn from ``seed`` alone (rlgan's generator contract)."""
        return self.generate(n, torch.Generator(self.out.weight.device).manual_seed(seed))

    def smiles(self, tokens: torch.Tensor) -> list[str]:
        return self.vocabulary.decode_batch(tokens)


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
