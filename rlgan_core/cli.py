"""The ``rlgan`` command: train, sample, plugins, doctor, new-plugin."""

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import time
import warnings
from pathlib import Path

from .errors import RlganError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rlgan", description="Train generative models with reward signals.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train from a TOML config (the digits default without one)")
    train.add_argument("config", nargs="?", help="TOML config file (default: the built-in digits run)")
    train.add_argument("--run-dir", help="where the run writes everything (default: runs/<name>-<time>)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its newest checkpoint")
    train.add_argument("--steps", type=int, help="override run.steps")
    train.add_argument("--device", help="override run.device (auto, cpu, cuda)")
    train.add_argument("--seed", type=int, help="override run.seed")
    train.add_argument("--nproc", type=int, default=1, metavar="N",
                       help="train with N data-parallel processes (through torch.distributed.run)")

    sample = commands.add_parser("sample", help="draw samples from a checkpoint into a PNG or a NumPy file")
    sample.add_argument("checkpoint", help="a checkpoint folder, or a run folder (its newest checkpoint)")
    sample.add_argument("-o", "--output", help="file to write (default: samples.png, or samples.npy with --format npy)")
    sample.add_argument("--format", choices=["png", "npy"],
                        help="png: a picture (the data source's render); npy: the sample tensor [n, *shape] as float32 "
                             "(default: from the extension of -o, else png)")
    sample.add_argument("-n", "--count", type=int, default=100, help="how many samples (default: 100)")
    sample.add_argument("--seed", type=int, default=0)

    tilt = commands.add_parser("tilt", help="sample p_ref·exp(r/β)/Z, the KL-regularised target of a reward, by resampling a run")
    tilt.add_argument("run", help="a checkpoint folder, or a run folder (its newest checkpoint): p_ref")
    tilt.add_argument("--reward", required=True, help="the reward r: one of the run's, or any registered reward")
    tilt.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                      help="an option of the reward (TOML value), repeatable")
    tilt.add_argument("--beta", type=float, nargs="+", metavar="B",
                      help="β, one or more (default: a sweep from 4 to 1/8 of the reward's standard deviation)")
    tilt.add_argument("-n", "--count", type=int, default=10000, help="samples drawn from the run (default: 10000)")
    tilt.add_argument("--seed", type=int, default=0)
    tilt.add_argument("-o", "--output", help="picture to write: tilted samples for one β, the frontier for several "
                      "(default: tilted.png or frontier.png)")
    tilt.add_argument("--json", metavar="FILE", help="also write the table as JSON")
    tilt.add_argument("--show", type=int, default=100, metavar="N",
                      help="how many tilted samples the picture of one β draws (default: 100)")
    tilt.add_argument("--compare", nargs="+", metavar="RUN", default=[],
                      help="with one β: how close these runs' samples come to p* (share of its reward gain, "
                           "total variation of class masses, Fréchet distance), beside p_ref's")

    plugins = commands.add_parser("plugins", help="list installed plugins and what each registers")
    plugins.add_argument("--json", action="store_true", help="print JSON")

    commands.add_parser("doctor", help="say which loss kernels are in use, and why")

    new = commands.add_parser("new-plugin", help="write a ready plugin distribution to start from")
    new.add_argument("name", help="its distribution name, such as rlgan-sparkle")
    new.add_argument("--kind", choices=["reward", "model", "data", "strategy"], default="reward")
    new.add_argument("--dir", default=".", help="where to put it (default: here)")

    args = parser.parse_args(argv)
    warnings.showwarning = show_warning
    try:
        commands = {"train": cmd_train, "sample": cmd_sample, "tilt": cmd_tilt, "plugins": cmd_plugins,
                    "doctor": cmd_doctor, "new-plugin": cmd_new_plugin}
        status = commands[args.command](args)
        sys.stdout.flush()  # here, where a closed pipe can still be handled
        return status
    except RlganError as error:
        if args.debug:
            raise
        print(f"rlgan: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C while stopping, or one outside training
        print("\nrlgan: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:  # output piped into a reader that stopped early (`rlgan plugins --json | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit's flush is silent
        return 0


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one ``rlgan: warning:`` line, above the progress bar when one is drawn."""
    from tqdm import tqdm

    tqdm.write(f"rlgan: warning: {message}", file=sys.stderr)


RUN_OVERRIDES = ("steps", "device", "seed")  # options of `rlgan train` that override [run] keys


def cmd_train(args) -> int:
    from . import checkpoint, distributed
    from .builtin.progress import close_bar
    from .config import load_config, parse_config, to_dict
    from .engine import Engine, resolve_device

    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "config.json").is_file():
            raise RlganError(f"{run_dir}: no run to resume (no config.json)")
        config = parse_config(json.loads((run_dir / "config.json").read_text()), str(run_dir / "config.json"))
    else:
        config = load_config(args.config)
        run_dir = Path(args.run_dir or f"runs/{config.run.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    for key in RUN_OVERRIDES:
        if getattr(args, key) is not None:
            setattr(config.run, key, getattr(args, key))
    if args.nproc > 1:
        return launch_processes(args, run_dir)
    distributed.setup(resolve_device(config.run.device))
    run_dir = Path(distributed.broadcast_object(str(run_dir)))  # under torchrun: rank 0's choice
    main_process = distributed.rank() == 0
    engine = Engine(config, run_dir)
    found = checkpoint_to_resume(run_dir, to_dict(engine.config), explicit=bool(args.resume), warn=main_process)
    found = distributed.broadcast_object(found and str(found))  # every rank resumes from rank 0's choice
    if found:
        engine.load_checkpoint(Path(found))
    if main_process:
        start = (f"resuming {run_dir} from step {engine.state.step}" + ("" if args.resume else " (the run there has this config)")
                 if found else f"run directory {run_dir}")
        print(f"rlgan: {start}" + (f" ({engine.world_size} processes)" if engine.world_size > 1 else ""), flush=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.write_atomically(run_dir / "config.json", json.dumps(to_dict(config), indent=2))
    with stop_on_signals(engine) as received:
        try:
            summary = engine.run()
        finally:
            close_bar(engine)  # so that an error prints on a line of its own
    if main_process and "stopped" in summary:
        print(f"rlgan: stopped at step {summary['steps']} ({summary['stopped']}); checkpoint {summary.get('checkpoint')}",
              file=sys.stderr)
        print(f"rlgan: resume with: rlgan train --resume {run_dir}", file=sys.stderr, flush=True)
    elif main_process:
        shown = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and k not in ("steps", "processes", "threads")}
        print("rlgan: " + ", ".join(f"{k} {v:.4g}" for k, v in shown.items()))
        print(f"rlgan: finished {summary['steps']} steps; results in {run_dir}", flush=True)
    return 128 + received[0] if received else 0


def checkpoint_to_resume(run_dir: Path, config: dict, explicit: bool, warn: bool) -> Path | None:
    """The checkpoint a run starts from: with ``--resume`` (``explicit``), or when ``--run-dir``
    holds a run of this same config (so that a job requeued or restarted with the same command
    continues it), the newest checkpoint that verifies, newer broken ones passed over with a
    warning; ``None`` for a fresh start (an empty folder, or a run that died before its first
    checkpoint).  A folder holding a run of another config is an error."""
    from . import checkpoint

    saved = run_dir / "config.json"
    if not explicit and saved.is_file():
        try:
            held = json.loads(saved.read_text())
        except ValueError as error:
            raise RlganError(f"{saved}: unreadable ({error}); pick another --run-dir") from None
        difference = first_difference(held, json.loads(json.dumps(config)))
        if difference:
            raise RlganError(f"{run_dir} holds a run of another config ({difference}); pick another --run-dir, "
                             f"or continue that run with: rlgan train --resume {run_dir}")
    elif not explicit:
        return None
    found, skipped = checkpoint.newest_valid(run_dir / "checkpoints")
    if warn:
        for why in skipped:
            print(f"rlgan: warning: passing over a broken checkpoint: {why}", file=sys.stderr, flush=True)
    if found is None and explicit:
        raise RlganError(f"{run_dir}: no checkpoint to resume from" + (" that verifies" if skipped else ""))
    return found


def first_difference(held, wanted, where: str = "") -> str:
    """Where two configs (as plain data) first differ, as ``key: held vs wanted``; "" when equal."""
    if isinstance(held, dict) and isinstance(wanted, dict):
        for key in sorted(set(held) | set(wanted)):
            inner = f"{where}.{key}" if where else key
            if key not in held or key not in wanted:
                return f"{inner}: {'absent' if key not in held else held[key]!r} there, {'absent' if key not in wanted else wanted[key]!r} here"
            found = first_difference(held[key], wanted[key], inner)
            if found:
                return found
        return ""
    return "" if held == wanted else f"{where}: {held!r} there, {wanted!r} here"


@contextlib.contextmanager
def stop_on_signals(engine):
    """While training: SIGINT (Ctrl-C) and SIGTERM (batch schedulers, torchrun) stop the run after
    the current step, with a checkpoint of that step; a second Ctrl-C stops at once.  Yields the
    list of signals received, for the exit status (128 + the signal, as the shell reports it)."""
    received = []

    def stop(signum, frame):
        if received and signum == signal.SIGINT:
            raise KeyboardInterrupt
        received.append(signum)
        name = signal.Signals(signum).name
        if engine.rank == 0:
            again = " (Ctrl-C again to stop at once)" if signum == signal.SIGINT else ""
            print(f"\nrlgan: {name}: stopping after step {engine.state.step + 1}, with a checkpoint{again}",
                  file=sys.stderr, flush=True)
        engine.request_stop(f"{name} received")

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def launch_processes(args, run_dir: Path) -> int:
    """Re-run this command as ``args.nproc`` processes through torch.distributed.run."""
    from torch.distributed import run

    command = ["train"]
    command += ["--resume", str(run_dir)] if args.resume else [*([args.config] if args.config else []), "--run-dir", str(run_dir)]
    for key in RUN_OVERRIDES:
        if getattr(args, key) is not None:
            command += [f"--{key}", str(getattr(args, key))]
    run.main(["--standalone", "--nproc-per-node", str(args.nproc), "-m", "rlgan_core", *command])
    return 0


def trained_engine(checkpoint_or_run: str, rewards: dict | None = None):
    """The engine of a checkpoint (or of a run folder's newest), its models loaded, and the
    checkpoint's path; ``rewards``: ``[rewards.NAME]`` tables to add to its config (or, for a
    reward it has, options to set in its table)."""
    from . import checkpoint
    from .config import parse_config
    from .engine import Engine
    from .errors import CheckpointError

    path = checkpoint.newest(checkpoint_or_run)
    if path is None:
        raise CheckpointError(f"{checkpoint_or_run}: neither a checkpoint nor a run folder with checkpoints")
    _, state = checkpoint.load(path)
    raw = state["config"]
    if rewards:
        known = raw.get("rewards", {})
        raw = {**raw, "rewards": {**known, **{name: {**known.get(name, {}), **table} for name, table in rewards.items()}}}
    config = parse_config(raw, f"{path}/state.json")
    config.logging.progress = False
    engine = Engine(config, path.parent.parent)
    engine.load_checkpoint(path)
    return engine, path


def cmd_sample(args) -> int:
    engine, path = trained_engine(args.checkpoint)
    samples = engine.generate(args.count, seed=args.seed)
    output_format = args.format or sample_format(args.output)
    output = Path(args.output or f"samples.{output_format}")
    if output_format == "npy":
        import numpy as np

        with open(output, "wb") as handle:  # exactly this name (np.save would add .npy to another)
            np.save(handle, samples.float().numpy())
    else:
        output.unlink(missing_ok=True)
        engine.data.render(samples, output)
        if not output.exists():
            raise RlganError(f"data source {engine.config.data.name!r} draws no picture of its samples; use --format npy")
    print(f"rlgan: wrote {args.count} samples from {path} to {output}")
    return 0


def cmd_tilt(args) -> int:
    from .tilt import default_betas, plot_frontier, tilt_rows

    if args.count < 2:
        raise RlganError(f"-n {args.count}: tilting needs at least 2 samples")
    if args.show < 1:
        raise RlganError(f"--show {args.show}: the picture needs at least 1 sample")
    if any(not beta > 0 for beta in args.beta or []):
        raise RlganError("--beta: every β must be positive")
    engine, path = trained_engine(args.run, {args.reward: reward_options(args.option)})
    bound = next((b for b in engine.context.rewards if b.name == args.reward), None)
    if bound is None:
        raise RlganError(f"--reward {args.reward!r}: no such reward in this run")
    samples = engine.generate(args.count, seed=args.seed)
    rewards, problem = engine.context.call_reward(bound, samples.to(engine.device), engine.context.reward_context())
    if problem:
        raise RlganError(problem)
    rewards = rewards.detach().float().cpu()
    if args.compare:
        return compare_to_target(args, engine, bound, path, samples, rewards)
    betas = sorted(args.beta or default_betas(rewards), reverse=True)
    rows = tilt_rows(samples, rewards, betas, engine.data.metrics, seed=args.seed)
    names = [key for key in rows[0] if key != "beta"]
    print(f"rlgan: {args.count} samples of {path}, tilted by exp({args.reward} / β)")
    print_table(rows, "beta", names)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    output = Path(args.output or ("frontier.png" if len(rows) > 2 else "tilted.png"))
    if len(rows) > 2:
        plot_frontier(rows, output, args.reward)
    else:
        from .tilt import resample, tilt_weights

        engine.data.render(samples[resample(tilt_weights(rewards, betas[0]), args.show, args.seed)], output)
    print(f"rlgan: wrote {output}" + (f" and {args.json}" if args.json else ""))
    return 0


def compare_to_target(args, engine, bound, path, samples, rewards) -> int:
    """``rlgan tilt --compare``: p* for one β from the reference run, and each compared run's
    distance to it (:func:`rlgan_core.tilt.compare_row`), beside the reference's own."""
    from .tilt import class_masses, compare_row, resample, tilt_weights

    if not args.beta or len(args.beta) != 1:
        raise RlganError("--compare needs exactly one --beta: the target p* the runs are measured against")
    weights = tilt_weights(rewards, args.beta[0])
    picked = resample(weights, args.count, args.seed)
    target_samples, target_rewards = samples[picked], rewards[picked]
    target = {"reward": float(target_rewards.double().mean()), "reference_reward": float(rewards.double().mean()),
              "masses": class_masses(engine.data, target_samples), "features": engine.data.features(target_samples)}
    rows = [compare_row("p*", target_samples, target_rewards, target, engine.data),
            compare_row("p_ref", samples, rewards, target, engine.data)]
    for run in args.compare:
        other, _ = trained_engine(run)
        drawn = other.generate(args.count, seed=args.seed + 1)
        scored, problem = engine.context.call_reward(bound, drawn.to(engine.device), engine.context.reward_context())
        if problem:
            raise RlganError(problem)
        rows.append(compare_row(run, drawn, scored.detach().float().cpu(), target, engine.data))
    print(f"rlgan: p* = p_ref·exp({args.reward} / {args.beta[0]:g}) / Z from {args.count} samples of {path}; "
          f"effective sample size {1 / float(weights.square().sum()):.0f}")
    print_table(rows, "run", [key for key in rows[0] if key != "run"])
    if args.json:
        Path(args.json).write_text(json.dumps({"beta": args.beta[0], "rows": rows}, indent=2))
        print(f"rlgan: wrote {args.json}")
    return 0


def print_table(rows: list[dict], first: str, names: list[str]) -> None:
    """Rows of numbers under their names, ``first`` (a number or a name) leading each row."""
    width = max(10, *(len(str(row[first])) for row in rows)) if isinstance(rows[0][first], str) else 10
    print(("β" if first == "beta" else first).rjust(width) + "".join(name.rjust(max(12, len(name) + 2)) for name in names))
    for row in rows:
        head = f"{row[first]:>{width}}" if isinstance(row[first], str) else f"{row[first]:{width}.4g}"
        print(head + "".join(f"{row.get(name, math.nan):{max(12, len(name) + 2)}.4g}" for name in names))


def reward_options(items: list[str]) -> dict:
    """``--option KEY=VALUE`` items as a reward table: values read as TOML, bare words as strings."""
    import tomllib

    options = {}
    for item in items:
        key, separator, value = (part.strip() for part in item.partition("="))
        if not separator or not key or not value:
            raise RlganError(f"--option {item!r}: write KEY=VALUE, the value as in TOML (3, 0.5, \"text\", [1, 2])")
        try:
            options[key] = tomllib.loads(f"value = {value}")["value"]
        except tomllib.TOMLDecodeError:
            options[key] = value
    return options


def sample_format(output: str | None) -> str:
    """The format ``rlgan sample`` writes to ``output`` when ``--format`` is not given."""
    suffix = Path(output).suffix.lower() if output else ""
    if suffix in ("", ".png"):
        return "png"
    if suffix == ".npy":
        return "npy"
    raise RlganError(f"-o {output}: rlgan sample writes .png pictures or .npy arrays; name the file so, or give --format")


def cmd_plugins(args) -> int:
    from .plugins import describe_plugins

    described = describe_plugins()
    if args.json:
        print(json.dumps(described, indent=2))
        return 0
    for entry in described:
        origin = f"{entry['distribution']} {entry['version']}" if entry["distribution"] else "built-in"
        print(f"{entry['name']}  ({origin})")
        if "broken" in entry:
            print(f"    BROKEN, not loaded: {entry['broken']}")
            continue
        for kind in ("models", "rewards", "data", "strategies"):
            if entry.get(kind):
                print(f"    {kind}: {', '.join(entry[kind])}")
        print(f"    hooks: {', '.join(entry['hooks'])}")
    return 0


def cmd_new_plugin(args) -> int:
    from .scaffold import new_plugin

    try:
        target = new_plugin(args.name, args.kind, Path(args.dir))
    except (ValueError, FileExistsError) as error:
        raise RlganError(str(error)) from None
    print(f"rlgan: wrote the {args.kind} plugin {args.name} to {target}")
    print(f"rlgan: next: pip install -e {target} && python -m pytest {target}/tests")
    return 0


def cmd_doctor(args) -> int:
    import torch

    from . import extension, threads

    found = extension.status()
    print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
    print(f"this CPU: {torch.backends.cpu.get_cpu_capability()} (as PyTorch rates it; ATEN_CPU_CAPABILITY lowers it)")
    print(f"kernel backend: {extension.backend()} (RLGAN_KERNEL or [kernel] backend)")
    count, why = threads.choose()
    print(f"CPU threads a run takes by default: {count} ({why}; [run] threads sets them)")
    busy = threads.cores_busy_elsewhere()
    if busy >= 0.5:
        print(f"rlgan: warning: other processes keep {busy:.1f} of {threads.usable_cores()} cores busy; runs started "
              "now take fewer threads, and PyTorch processes that share cores slow each other down", file=sys.stderr)
    if found.loaded:
        print(f"fused extension: loaded ({found.origin}); kernels for: {', '.join(found.devices) or 'no device'}")
        build = found.build
        running = extension.build.torch_version()
        print(f"  built against torch {build.get('torch')} (running {running}: the same)")
        print(f"  CPU kernels for {build.get('cpu')}, OpenMP {build.get('openmp')}, CUDA kernels {build.get('cuda')}")
    else:
        print(f"fused extension: not loaded: {found.reason}")
    for device in ("cpu", "cuda"):
        if device == "cuda" and not torch.cuda.is_available():
            continue
        try:
            used = "fused" if extension.use_fused(torch.device(device)) else "fallback"
        except RlganError as error:
            used = f"error: {error}"
        print(f"  {device}: {used}")
    return 0
