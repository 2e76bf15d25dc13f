"""Pictures: a grid of samples at each evaluation (``samples.png``, and one per step under
``samples/``), and loss and reward curves at the end (``curves.png``)."""

from ..hookspecs import hookimpl
from .logs import read_metrics


@hookimpl
def rlgan_evaluation_end(engine, samples):
    folder = engine.run_dir / "samples"
    folder.mkdir(exist_ok=True)
    shown = samples[:100] if samples[0].numel() > 2 else samples
    engine.data.render(shown, folder / f"step-{engine.state.step:08d}.png")
    engine.data.render(shown, engine.run_dir / "samples.png")


@hookimpl
def rlgan_train_end(engine):
    plot_curves(read_metrics(engine.run_dir), engine.run_dir / "curves.png")


def plot_curves(records: list[dict], path) -> None:
    """One panel each for losses, rewards and evaluation metrics, against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {}
    for record in records:
        for key, value in record.items():
            if key != "step":
                group, _, name = key.partition("/")
                groups.setdefault(group, {}).setdefault(name, ([], []))
                groups[group][name][0].append(record["step"])
                groups[group][name][1].append(value)
    if not groups:
        return
    figure, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.6), squeeze=False)
    for axis, (group, series) in zip(axes[0], sorted(groups.items())):
        for name, (steps, values) in sorted(series.items()):
            axis.plot(steps, values, label=name, marker="o" if group == "eval" else None, markersize=3)
        axis.set_title(group)
        axis.set_xlabel("step")
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
