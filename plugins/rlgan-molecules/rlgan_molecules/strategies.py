"""Strategies under PMO's oracle budget: ``reinvent`` and ``prior_sampling``.

Both draw batches of SMILES from a policy and score them as PMO counts calls
(:class:`rlgan_molecules.OracleBudget`): each new valid canonical SMILES is one call to the
configured rewards (their weighted sum is the score), invalid ones score 0 and repeats come from
the cache, both free.  The run ends when ``max_oracle_calls`` are spent (or at ``run.steps``).
What was scored is saved with each checkpoint, so a resumed run goes on with the same budget.

``reinvent`` (Olivecrona et al. 2017, as PMO runs it) trains the policy towards
``log p_prior(x) + sigma · score(x)``: the loss is ``(log p_prior + sigma·score − log p_agent)²``,
averaged over the batch (duplicates dropped) and ``replay`` sequences drawn from the best
``memory`` molecules so far (with probability ∝ score), plus ``5e3 · mean(−1 / log p_agent)``.
Its optimum is the KL-regularised target ``p_prior · exp(score / β)`` with ``β = 1 / sigma``.
``augmentation_rounds`` > 0 adds Augmented Memory's extra updates (Guo & Schwaller 2024): the same
loss on randomised SMILES of the batch and of the memory, which cost no oracle calls.
``scaffold_bucket`` > 0 switches on REINVENT's identical-Murcko-scaffold diversity filter
(:class:`ScaffoldFilter`).  ``patience`` is PMO's early stop for REINVENT: after 1,000 calls, the run ends once the best 100
molecules have not changed for ``patience`` steps (0: never); the AUC pads the rest of the budget
with the last value, as PMO does.
``prior_sampling`` draws from the policy and learns nothing: the baseline any RL must beat.
"""

import copy
import heapq
import time

import torch

from rlgan_core import ConfigError, Strategy

from .budget import OracleBudget, auc_top_k
from .smiles import canonical, quiet_rdkit, to_molecule


class BudgetedSampling(Strategy):
    """Sampling and scoring under the oracle budget; ``prior_sampling`` as it stands."""

    roles = {"generator": True}

    def __init__(self, context, max_oracle_calls: int = 10_000):
        super().__init__(context)
        if not hasattr(context.generator, "vocabulary") or not hasattr(context.generator, "generate"):
            raise ConfigError(f"[strategy] {type(self).__name__}: needs a SMILES policy generator, such as smiles_prior")
        if max_oracle_calls < 1:
            raise ConfigError(f"[strategy] max_oracle_calls must be positive, got {max_oracle_calls}")
        if context.world_size > 1:
            raise ConfigError("[strategy] the molecule strategies run in one process")
        quiet_rdkit()
        self.budget = OracleBudget(max_oracle_calls)
        self.sampled = self.valid = 0
        self.unique: set[str] = set()
        self.seconds = {"sampling": 0.0, "scoring": 0.0, "updates": 0.0}

    def finished(self) -> bool:
        return self.budget.spent

    def draw(self) -> tuple[torch.Tensor, list[str | None]]:
        """A batch of sequences from the generator and their canonical SMILES (None: invalid)."""
        started = time.perf_counter()
        rng = torch.Generator(self.context.device).manual_seed(self.context.seed())
        tokens = self.context.generator.generate(self.context.config.run.batch_size, rng)
        tokens = tokens[:, : int((tokens != self.context.generator.vocabulary.pad).sum(1).max())]  # no all-pad columns
        forms = [canonical(s) for s in self.context.generator.smiles(tokens)]
        self.sampled += len(forms)
        self.valid += sum(f is not None for f in forms)
        self.unique.update(f for f in forms if f is not None)
        self.seconds["sampling"] += time.perf_counter() - started
        return tokens, forms

    def score(self, tokens: torch.Tensor, forms: list[str | None]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scores ``[N]`` of a batch: new molecules through the rewards (spending calls), the rest
        from the cache; and the rewards ``[n, K]`` of the new ones (for the logs)."""
        started = time.perf_counter()
        context = self.context
        fresh = self.budget.new(forms)
        rewards = None
        if fresh:
            rows = [forms.index(s) for s in fresh]
            rewards = context.compute_rewards(tokens[rows], context.reward_context())
            if rewards is not None:
                self.budget.record(fresh, (rewards @ context.reward_weights).tolist())
        scores = torch.tensor(self.budget.lookup(forms), device=context.device)
        self.seconds["scoring"] += time.perf_counter() - started
        return scores, rewards

    def step(self):
        started = time.perf_counter()
        tokens, forms = self.draw()
        _, rewards = self.score(tokens, forms)
        return self.context.step_output({}, rewards, started, len(forms))

    def report(self) -> dict:
        """PMO's figures of the run so far (added to ``summary.json``)."""
        values = list(self.budget.scores.values())
        top10 = [value for value, _ in self.budget.top(10)]
        return {
            "oracle_calls": self.budget.calls,
            **{f"auc_top{k}": auc_top_k(values, k, self.budget.max_calls) for k in (1, 10, 100)},
            "top10_mean": sum(top10) / len(top10) if top10 else 0.0,
            "validity": self.valid / max(1, self.sampled),
            "uniqueness": len(self.unique) / max(1, self.valid),
            "diversity": internal_diversity([s for _, s in self.budget.top(100)]),
            "seconds": {key: round(value, 2) for key, value in self.seconds.items()},
        }

    # --- what a checkpoint keeps: the scored molecules in call order, and the counts ---------------

    def state_dict(self) -> dict:
        counts = [self.sampled, self.valid]
        return {"smiles": lines_tensor(self.budget.scores),
                "scores": torch.tensor(list(self.budget.scores.values()), dtype=torch.float64),
                "unique": lines_tensor(sorted(self.unique)),
                "counts": torch.tensor(counts, dtype=torch.long),
                "seconds": torch.tensor(list(self.seconds.values()), dtype=torch.float64)}

    def load_state_dict(self, state: dict) -> None:
        self.budget.scores = dict(zip(tensor_lines(state["smiles"]), state["scores"].tolist()))
        self.unique = set(tensor_lines(state["unique"]))
        self.sampled, self.valid = state["counts"].tolist()
        self.seconds = dict(zip(self.seconds, state["seconds"].tolist()))


class Reinvent(BudgetedSampling):
    def __init__(self, context, max_oracle_calls: int = 10_000, sigma: float = 500.0, lr: float = 5e-4,
                 replay: int = 24, memory: int = 100, likelihood_penalty: float = 5e3, augmentation_rounds: int = 0,
                 patience: int = 5, scaffold_bucket: int = 0, bucket_min_score: float = 0.4):
        super().__init__(context, max_oracle_calls)
        if (sigma <= 0 or lr <= 0 or replay < 0 or memory < 1 or augmentation_rounds < 0 or patience < 0
                or scaffold_bucket < 0):
            raise ConfigError("[strategy] reinvent: sigma and lr must be positive, replay, augmentation_rounds, patience "
                              f"and scaffold_bucket >= 0, memory >= 1 (got sigma={sigma}, lr={lr}, replay={replay}, "
                              f"memory={memory}, augmentation_rounds={augmentation_rounds}, patience={patience}, "
                              f"scaffold_bucket={scaffold_bucket})")
        self.patience, self.stalled, self.best = patience, 0, frozenset()
        self.written: dict[str, str] = {}  # canonical SMILES -> the SMILES the policy wrote for it (replayed)
        self.scaffolds = ScaffoldFilter(scaffold_bucket, bucket_min_score)
        self.sigma, self.replay, self.memory = sigma, replay, memory
        self.likelihood_penalty, self.augmentation_rounds = likelihood_penalty, augmentation_rounds
        for group in context.generator_optimizer.param_groups:
            group["lr"] = lr
        context.add_model("prior", copy.deepcopy(context.generator))  # frozen: the policy as it starts

    def step(self):
        context = self.context
        started = time.perf_counter()
        tokens, forms = self.draw()
        keep = first_occurrences(context.generator.smiles(tokens))  # REINVENT drops repeated sequences
        tokens, forms = tokens[keep], [forms[i] for i in keep]
        calls = self.budget.calls
        _, rewards = self.score(tokens, forms)
        update_started = time.perf_counter()
        for form, text in zip(forms, context.generator.smiles(tokens)):
            if form is not None:
                self.written.setdefault(form, text)
        self.scaffolds.admit(list(self.budget.scores.items())[calls:])
        scores = torch.tensor(self.scaffolds.filter(forms, self.budget.lookup(forms)), device=context.device)
        sequences, targets = [tokens], [scores]
        memory = [(value, s) for value, s in self.memory_top() if value > 0]
        if self.replay and memory:
            weights = torch.tensor([value for value, _ in memory], dtype=torch.float64)
            picks = torch.multinomial(weights, min(self.replay, len(memory)), replacement=False,
                                      generator=context.data_rng).tolist()
            sequences.append(self.encode([self.written[memory[i][1]] for i in picks]))
            targets.append(torch.tensor([memory[i][0] for i in picks], device=context.device, dtype=scores.dtype))
        loss = self.update(torch.cat(pad_to_same(sequences)), torch.cat(targets))
        for _ in range(self.augmentation_rounds):
            batch = [s for s in forms if s is not None] + [s for _, s in memory]
            values = self.scaffolds.filter(batch, self.budget.lookup(batch))
            randomised, kept = randomise(batch, context.generator.vocabulary)
            if randomised:
                self.update(self.encode(randomised), torch.tensor([values[i] for i in kept], device=context.device))
        self.seconds["updates"] += time.perf_counter() - update_started
        best = frozenset(s for _, s in self.budget.top(100))
        self.stalled = self.stalled + 1 if best == self.best and self.budget.calls > 1000 else 0
        self.best = best
        return context.step_output({"generator": loss}, rewards, started, len(forms))

    def finished(self) -> bool:
        return super().finished() or (self.patience > 0 and self.stalled >= self.patience)

    def memory_top(self) -> list[tuple[float, str]]:
        """The replay memory: the best ``memory`` molecules by their (filtered) scores."""
        scores = self.scaffolds.filter(list(self.budget.scores), list(self.budget.scores.values()))
        return heapq.nlargest(self.memory, zip(scores, self.budget.scores))

    def state_dict(self) -> dict:
        written = lines_tensor([self.written.get(s, s) for s in self.budget.scores])
        return {**super().state_dict(), "stalled": torch.tensor(self.stalled), "written": written}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.stalled = int(state["stalled"])
        self.best = frozenset(s for _, s in self.budget.top(100))
        self.written = dict(zip(self.budget.scores, tensor_lines(state["written"])))
        self.scaffolds.admit(list(self.budget.scores.items()))

    def update(self, tokens: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """One Adam step on the DAP loss of ``tokens`` with ``scores``; its gradient goes through
        the policy's fused policy loss, with per-sequence advantages −∂loss/∂log p_agent."""
        context, agent = self.context, self.context.generator
        with torch.no_grad():
            augmented = context.models["prior"].log_likelihood(tokens) + self.sigma * scores
        hidden = agent.hidden_states(tokens)
        with torch.no_grad():
            log_p = agent.log_likelihood(tokens, hidden=hidden.detach())
        n = len(tokens)
        loss = (augmented - log_p).square().mean() + self.likelihood_penalty * (-1 / log_p).mean()
        gradient = (-2 * (augmented - log_p) + self.likelihood_penalty / log_p.square()) / n  # ∂loss/∂log p
        surrogate = agent.policy_loss(tokens, -gradient, hidden=hidden)
        context.generator_optimizer.zero_grad(set_to_none=True)
        surrogate.backward()
        context.generator_optimizer.step()
        return loss.detach()

    def encode(self, smiles: list[str]) -> torch.Tensor:
        """Token ids ``[N, L]`` of ``smiles``, ``L`` the longest's length."""
        vocabulary = self.context.generator.vocabulary
        return vocabulary.encode_batch(smiles, max(len(vocabulary.encode(s)) for s in smiles)).to(self.context.device)


class ScaffoldFilter:
    """REINVENT's identical-Murcko-scaffold diversity filter: the molecules scoring at least
    ``min_score`` fill a bucket per Bemis–Murcko scaffold, in call order; past the first ``bucket``
    of a scaffold, a molecule's training score is 0 (its oracle score, and the AUC, stay as they
    are).  ``bucket`` = 0: no filter."""

    def __init__(self, bucket: int, min_score: float):
        self.bucket, self.min_score = bucket, min_score
        self.counts: dict[str, int] = {}
        self.filtered: set[str] = set()

    def admit(self, scored: list[tuple[str, float]]) -> None:
        """Put newly scored molecules (canonical SMILES, score; in call order) in their buckets."""
        if not self.bucket:
            return
        from rdkit.Chem.Scaffolds import MurckoScaffold

        for smiles, value in scored:
            if value >= self.min_score:
                scaffold = MurckoScaffold.MurckoScaffoldSmiles(mol=to_molecule(smiles))
                self.counts[scaffold] = self.counts.get(scaffold, 0) + 1
                if self.counts[scaffold] > self.bucket:
                    self.filtered.add(smiles)

    def filter(self, smiles: list[str | None], scores: list[float]) -> list[float]:
        return [0.0 if s in self.filtered else value for s, value in zip(smiles, scores)]


def lines_tensor(lines) -> torch.Tensor:
    """Strings as one uint8 tensor (a checkpoint holds tensors), one per line."""
    data = "\n".join(lines).encode()
    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8)


def tensor_lines(tensor: torch.Tensor) -> list[str]:
    return tensor.numpy().tobytes().decode().split("\n") if len(tensor) else []


def first_occurrences(items: list) -> list[int]:
    seen, keep = set(), []
    for index, item in enumerate(items):
        if item not in seen:
            seen.add(item)
            keep.append(index)
    return keep


def pad_to_same(batches: list[torch.Tensor]) -> list[torch.Tensor]:
    length = max(b.shape[1] for b in batches)
    return [torch.nn.functional.pad(b, (0, length - b.shape[1])) for b in batches]  # pad id is 0


def randomise(smiles: list[str], vocabulary) -> tuple[list[str], list[int]]:
    """A random (non-canonical) SMILES of each molecule whose random form the vocabulary can write
    (a random atom order may need ring-closure digits it lacks), and the indices of those kept;
    RDKit draws the atom order from its own generator."""
    from rdkit import Chem

    out, kept = [], []
    for index, s in enumerate(smiles):
        molecule = to_molecule(s)
        if molecule is None:
            continue
        random_form = Chem.MolToSmiles(molecule, canonical=False, doRandom=True)
        try:
            vocabulary.encode(random_form)
        except ValueError:
            continue
        out.append(random_form)
        kept.append(index)
    return out, kept


def internal_diversity(smiles: list[str]) -> float:
    """1 − the mean pairwise Tanimoto similarity of ECFP4 bit vectors (2048 bits), as PMO reports."""
    from rdkit import DataStructs
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    fingerprints = [generator.GetFingerprint(m) for m in map(to_molecule, smiles) if m is not None]
    if len(fingerprints) < 2:
        return 0.0
    total = sum(sum(DataStructs.BulkTanimotoSimilarity(fp, fingerprints[i + 1:])) for i, fp in enumerate(fingerprints[:-1]))
    pairs = len(fingerprints) * (len(fingerprints) - 1) / 2
    return 1.0 - total / pairs
