"""Metrics as JSON lines (``RUN_DIR/metrics.jsonl``) and TensorBoard events (``RUN_DIR/tensorboard``):
losses, each reward's mean as returned (``reward/NAME``) and times its weight at that step
(``reward/NAME/weighted``), their sum, which the generator is trained on (``reward/total``),
evaluation metrics, and throughput (``perf/``: step time and samples per
second of one process, and of all of them together)."""

import json
from pathlib import Path

from ..hookspecs import hookimpl

METRICS_FILE = "metrics.jsonl"


def read_metrics(run_dir) -> list[dict]:
    """Every record logged so far in ``run_dir``'s metrics file (none when it does not exist yet)."""
    path = Path(run_dir) / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []


def weighted(engine, rewards: dict) -> dict[str, float]:
    """Each reward's mean times its weight at this step (weight-0 rewards are only watched)."""
    weights = {bound.name: bound.weight for bound in engine.context.rewards}
    return {name: weights.get(name, 0.0) * float(value) for name, value in rewards.items()}


def weighted_total(engine, rewards: dict) -> float:
    """The rewards' means weighted as the config weights them at this step."""
    return sum(weighted(engine, rewards).values())


@hookimpl
def rlgan_train_start(engine):
    path = engine.run_dir / METRICS_FILE
    if path.exists():  # a resumed run: drop what was logged after the checkpoint it resumes from
        kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= engine.state.step]
        path.write_text("".join(line + "\n" for line in kept))
    engine.stash["metrics_file"] = open(path, "a")
    if engine.config.logging.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        engine.stash["tensorboard"] = SummaryWriter(engine.run_dir / "tensorboard", purge_step=engine.state.step + 1)


@hookimpl
def rlgan_step_end(engine, output):
    if output.step % engine.config.logging.every == 0:
        values = {f"loss/{k}": float(v) for k, v in output.losses.items()}
        values.update({f"reward/{k}": float(v) for k, v in output.rewards.items()})
        values.update({f"policy/{k}": float(v) for k, v in output.diagnostics.items()})
        if output.rewards:
            parts = weighted(engine, output.rewards)
            values.update({f"reward/{k}/weighted": v for k, v in parts.items()})
            values["reward/total"] = sum(parts.values())
        if output.seconds > 0:
            values["perf/step_time_s"] = output.seconds
            values["perf/samples_per_s_per_process"] = output.samples / output.seconds
            values["perf/samples_per_s"] = output.samples * engine.world_size / output.seconds
        if engine.state.skipped_batches:
            values["perf/skipped_batches"] = engine.state.skipped_batches
        _write(engine, engine.state.step, values)


@hookimpl
def rlgan_evaluation_end(engine, metrics):
    _write(engine, engine.state.step, {f"eval/{k}": v for k, v in metrics.items()})


@hookimpl
def rlgan_train_end(engine):
    engine.stash.pop("metrics_file").close()
    writer = engine.stash.pop("tensorboard", None)
    if writer is not None:
        writer.close()


def _write(engine, step: int, values: dict[str, float]) -> None:
    if not values:
        return
    file = engine.stash["metrics_file"]
    file.write(json.dumps({"step": step, **values}) + "\n")
    file.flush()
    writer = engine.stash.get("tensorboard")
    if writer is not None:
        for key, value in values.items():
            writer.add_scalar(key, value, step)
