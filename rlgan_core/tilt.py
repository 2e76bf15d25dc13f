"""``rlgan tilt``: samples of the KL-regularised target of a trained run, without training.

Fine-tuning a model ``p_ref`` to maximise ``E_q[r] − β·KL(q ‖ p_ref)`` has one optimum,
``p*(x) = p_ref(x)·exp(r(x)/β) / Z``: the reward raised, everything else kept.  Where ``p_ref`` can
be sampled, so can ``p*``, almost exactly: draw ``n`` samples of ``p_ref``, weight each by
``exp(r/β)`` (normalised), and resample ``n`` of them by those weights.  Its precision is the
effective sample size ``1 / Σ w²`` (``n`` at β = ∞, 1 when one sample takes all the weight).

That is test-time alignment with any black-box reward, and the yardstick of RL fine-tuning with
a KL penalty: a fine-tuned run that targets ``p*`` should match what this draws.
"""

import math

import torch


def tilt_weights(rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """The normalised weights ``exp(r/β) / Σ exp(r/β)`` of samples with ``rewards`` ``[N]``, in float64."""
    if not beta > 0:
        raise ValueError(f"beta must be positive, got {beta}")
    return torch.softmax(rewards.double() / beta, dim=0)


def effective_sample_size(weights: torch.Tensor) -> float:
    """Kish's effective sample size ``1 / Σ w²`` of normalised ``weights``."""
    return float(1.0 / weights.square().sum())


def resample(weights: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` indices drawn with replacement in proportion to ``weights`` (multinomial resampling)."""
    return torch.multinomial(weights, n, replacement=True, generator=torch.Generator().manual_seed(seed))


def default_betas(rewards: torch.Tensor) -> list[float]:
    """A sweep of β from four standard deviations of the reward (a slight tilt) down to an eighth
    of one (a strong one), halving each time."""
    spread = float(rewards.double().std()) or 1.0
    return [spread * 4 / 2**k for k in range(6)]


def tilt_rows(samples: torch.Tensor, rewards: torch.Tensor, betas: list[float], metrics, seed: int = 0) -> list[dict]:
    """One row per β (the first, β = ∞, the reference itself): β, the effective sample size, the
    target's mean reward (the weighted mean over the draws) and ``metrics`` of the resampled
    draws (a data source's ``metrics``)."""
    n = len(samples)
    rows = [{"beta": math.inf, "ess": float(n), "reward": float(rewards.double().mean()), **metrics(samples)}]
    for beta in betas:
        weights = tilt_weights(rewards, beta)
        picked = samples[resample(weights, n, seed)]
        rows.append({"beta": beta, "ess": effective_sample_size(weights),
                     "reward": float((weights * rewards.double()).sum()), **metrics(picked)})
    return rows


def class_masses(data, samples: torch.Tensor) -> torch.Tensor | None:
    """The share of ``samples`` in each of the data source's classes or modes (``None`` when it
    has none), over as many classes as the largest one seen and at least the source's ``means``;
    samples in no class (``-1``) count in none, so the shares sum to the classified share."""
    labels = data.classify(samples)
    if labels is None:
        return None
    labels = labels.cpu()
    count = max(int(labels.max()) + 1, len(getattr(data, "means", ())), 1)
    return torch.bincount(labels[labels >= 0], minlength=count).double() / len(labels)


def same_length(masses_a: torch.Tensor, masses_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two class-mass vectors padded with zeros to the longer one's length (a class one side never
    saw holds nothing there)."""
    size = max(len(masses_a), len(masses_b))
    return tuple(torch.nn.functional.pad(m, (0, size - len(m))) for m in (masses_a, masses_b))


def total_variation(masses_a: torch.Tensor, masses_b: torch.Tensor) -> float:
    """Half the L1 distance between two class-mass vectors, the share of samples in no class
    counting as one more class."""
    a, b = same_length(masses_a, masses_b)
    unclassified = (1 - a.sum()) - (1 - b.sum())
    return float(((a - b).abs().sum() + unclassified.abs()) / 2)


def compare_row(name: str, samples: torch.Tensor, rewards: torch.Tensor, target: dict, data) -> dict:
    """How close ``samples`` (with their ``rewards``) come to the target ``p*``: ``target`` holds the
    reference's and the target's mean reward, the target's class masses and features.  The share
    of the target's reward gain reached, the Fréchet distance of the data source's features; with
    classes, the total variation of class masses, the largest relative error of a class's mass
    among the classes that hold at least 2 % of the target (``mass_error``: 0.3 is 30 % too much
    or too little), and how many classes hold at least a fifth of a fair share."""
    from .metrics import frechet_distance

    reward = float(rewards.double().mean())
    gain = target["reward"] - target["reference_reward"]
    row = {"run": name, "reward": reward, "gain_share": (reward - target["reference_reward"]) / gain if gain else math.nan,
           "frechet_to_target": frechet_distance(data.features(samples), target["features"])}
    masses = class_masses(data, samples)
    if masses is not None:
        row["class_tv"] = total_variation(masses, target["masses"])
        mine, theirs = same_length(masses, target["masses"])
        held = theirs >= 0.02
        row["mass_error"] = float(((mine[held] - theirs[held]).abs() / theirs[held]).max())
        row["classes"] = int((masses >= 0.2 / len(masses)).sum())
    return row


def plot_frontier(rows: list[dict], path, reward_name: str) -> None:
    """The target's mean reward against each metric of its resampled draws, one point per β."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [key for key in rows[0] if key not in ("beta", "ess", "reward")]
    figure, axes = plt.subplots(1, max(1, len(names)), figsize=(4.5 * max(1, len(names)), 3.8), squeeze=False)
    for axis, name in zip(axes[0], names or [None]):
        xs = [row["reward"] for row in rows]
        ys = [row[name] if name else row["ess"] for row in rows]
        axis.plot(xs, ys, "o-")
        if min(ys) > 0 and max(ys) > 20 * min(ys):
            axis.set_yscale("log")
        for index, (row, x, y) in enumerate(zip(rows, xs, ys)):
            label = "p_ref" if math.isinf(row["beta"]) else f"β={row['beta']:.3g}"
            axis.annotate(label, (x, y), fontsize=7, textcoords="offset points", xytext=(4, 6 if index % 2 else -12))
        axis.set_xlabel(f"mean {reward_name} under p*")
        axis.set_ylabel(name or "effective sample size")
        axis.grid(alpha=0.3)
    figure.suptitle("p* = p_ref · exp(r/β) / Z, by resampling")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
