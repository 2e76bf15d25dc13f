"""``nll_oracle.png``: NLL_oracle (and NLL_test) of the generator over the epochs of a run."""

from rlgan_core import read_metrics


def plot_nll(engine) -> None:
    records = read_metrics(engine.run_dir)
    series = {key: [(r["step"], r[key]) for r in records if key in r] for key in ("eval/nll_oracle", "eval/nll_test")}
    if not series["eval/nll_oracle"]:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    steps = engine.config.run.steps
    phases = [engine.strategy.phase(step) for step in range(steps)]
    start = 0
    for step in range(1, steps + 1):
        if step == steps or phases[step] != phases[start]:
            axis.axvspan(start, step, alpha=0.12, color={"mle": "C0", "discriminator": "C7"}.get(phases[start], "C3"))
            axis.text((start + step) / 2, 1.0, phases[start], transform=axis.get_xaxis_transform(),
                      ha="center", va="bottom", fontsize=8)
            start = step
    for key, label in (("eval/nll_oracle", "NLL_oracle (generated samples)"), ("eval/nll_test", "NLL_test (held-out data)")):
        if series[key]:
            axis.plot(*zip(*series[key]), marker="o", markersize=3, label=label)
    axis.set_xlabel("epoch (engine step)")
    axis.set_ylabel("nats per token")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(engine.run_dir / "nll_oracle.png", dpi=100)
    plt.close(figure)
