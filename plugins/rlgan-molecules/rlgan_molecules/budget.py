"""PMO's oracle budget and its AUC top-k (Gao et al. 2022, "Sample Efficiency Matters").

A call is a new canonical SMILES: invalid SMILES score 0 and cost nothing, a SMILES scored before
comes from the cache and costs nothing.  Every ``every`` calls the mean of the best k scores so far
is recorded (the mean of all of them while fewer than k were scored); the AUC integrates those points by the trapezoid rule from 0 calls, pads a run that
stopped early with its last value up to the budget, and divides by the budget.
"""

import heapq


class OracleBudget:
    """The molecules scored so far, in call order, with their scores; at most ``max_calls``."""

    def __init__(self, max_calls: int = 10_000):
        if max_calls < 1:
            raise ValueError(f"max_oracle_calls must be positive, got {max_calls}")
        self.max_calls = max_calls
        self.scores: dict[str, float] = {}  # canonical SMILES -> score, in call order

    @property
    def calls(self) -> int:
        return len(self.scores)

    @property
    def spent(self) -> bool:
        return self.calls >= self.max_calls

    def new(self, canonical_smiles: list[str | None]) -> list[str]:
        """The SMILES among ``canonical_smiles`` that would cost a call (valid, unseen, first of
        their kind here), cut to what the budget has left, in order."""
        fresh, seen = [], set()
        for s in canonical_smiles:
            if s is not None and s not in self.scores and s not in seen:
                seen.add(s)
                fresh.append(s)
        return fresh[: self.max_calls - self.calls]

    def record(self, smiles: list[str], scores: list[float]) -> None:
        for s, value in zip(smiles, scores):
            self.scores.setdefault(s, float(value))

    def lookup(self, canonical_smiles: list[str | None]) -> list[float]:
        """Scores from the cache: 0.0 for invalid SMILES and for SMILES never scored (over budget)."""
        return [self.scores.get(s, 0.0) if s is not None else 0.0 for s in canonical_smiles]

    def top(self, k: int) -> list[tuple[float, str]]:
        return heapq.nlargest(k, ((value, s) for s, value in self.scores.items()))


def auc_top_k(scores_in_call_order: list[float], k: int, max_calls: int, every: int = 100) -> float:
    """PMO's AUC of the mean of the best ``k`` scores over ``max_calls`` calls, in [0, 1]."""
    best: list[float] = []  # a min-heap of the best k so far
    points, total = [], 0.0
    for index, value in enumerate(scores_in_call_order[:max_calls], start=1):
        if len(best) < k:
            heapq.heappush(best, value)
        elif value > best[0]:
            heapq.heapreplace(best, value)
        if index % every == 0 or index == len(scores_in_call_order[:max_calls]):
            points.append((index, sum(best) / len(best)))
    previous_calls, previous_value = 0, 0.0
    for calls, value in points:
        total += (calls - previous_calls) * (previous_value + value) / 2
        previous_calls, previous_value = calls, value
    total += (max_calls - previous_calls) * previous_value  # padded with the last value
    return total / max_calls
