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
    """The losses in one panel, and every other series (each reward, as returned and weighted,
    each evaluation metric and throughput figure, with scales of their own) in a panel of its own,
    against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {}
    for record in records:
        for key, value in record.items():
            if key != "step":
                parts = key.split("/")
                # the losses share a panel; a reward shares one with its weighted value (reward/NAME/weighted)
                if parts[0] == "loss":
                    panel, name = "loss", "/".join(parts[1:])
                else:
                    panel, name = "/".join(parts[:2]), "/".join(parts[2:]) or "as returned"
                panels.setdefault(panel, {}).setdefault(name, ([], []))
                panels[panel][name][0].append(record["step"])
                panels[panel][name][1].append(value)
    if not panels:
        return
    columns = min(4, len(panels))
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for axis, (panel, series) in zip(axes.flat, sorted(panels.items(), key=lambda item: (item[0] != "loss", item[0]))):
        for name, (steps, values) in sorted(series.items()):
            axis.plot(steps, values, label=name, marker="o" if panel.startswith("eval/") else None, markersize=3)
        shown = [v for _, values in series.values() for v in values]
        if min(shown) > 0 and max(shown) > 100 * min(shown):  # such as a distance that falls from 800 to 2
            axis.set_yscale("log")
        axis.set_title(panel, fontsize=10)
        axis.set_xlabel("step")
        if len(series) > 1:
            axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(panels):]:
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
