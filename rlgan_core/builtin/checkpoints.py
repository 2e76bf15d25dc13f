"""Checkpoints every ``checkpoint.every`` steps and at the end, under ``RUN_DIR/checkpoints``."""

from ..checkpoint import PREFIX, list_checkpoints
from ..hookspecs import hookimpl


@hookimpl
def rlgan_step_end(engine, output):
    if engine.state.step % engine.config.checkpoint.every == 0:
        engine.save_checkpoint()


@hookimpl
def rlgan_train_end(engine, summary):
    saved = list_checkpoints(engine.run_dir / "checkpoints")
    last = saved[-1] if saved and saved[-1].name == f"{PREFIX}{engine.state.step:08d}" else engine.save_checkpoint()
    summary["checkpoint"] = str(last)
