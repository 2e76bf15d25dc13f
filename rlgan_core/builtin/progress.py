"""A progress bar with the live losses and the weighted reward (switch off with ``logging.progress``)."""

from tqdm.auto import tqdm

from ..hookspecs import hookimpl
from .logs import weighted_total


@hookimpl
def rlgan_train_start(engine):
    if engine.config.logging.progress:
        engine.stash["progress"] = tqdm(
            total=engine.config.run.steps, initial=engine.state.step, desc=engine.config.run.name,
            unit="step", dynamic_ncols=True,
        )


SHORT = {"generator": "g", "discriminator": "d"}


@hookimpl
def rlgan_step_end(engine, output):
    bar = engine.stash.get("progress")
    if bar is None:
        return
    bar.update(1)
    if output.step % engine.config.logging.every == 0:
        shown = {f"loss_{SHORT.get(k, k)}": f"{float(v):.3f}" for k, v in output.losses.items()}
        if output.rewards:
            shown["reward"] = f"{weighted_total(engine, output.rewards):.3f}"
        bar.set_postfix(shown, refresh=False)


@hookimpl
def rlgan_evaluation_end(engine, metrics):
    bar = engine.stash.get("progress")
    if bar is not None and metrics:
        bar.write(f"step {engine.state.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))


@hookimpl
def rlgan_train_end(engine):
    close_bar(engine)


def close_bar(engine) -> None:
    """End the progress bar's line: at the end of a run, and before an error is printed."""
    bar = engine.stash.pop("progress", None)
    if bar is not None:
        bar.close()
