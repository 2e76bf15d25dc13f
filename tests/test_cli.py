import json
import subprocess
import sys

from helpers import rlgan


def test_train_resume_and_sample(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(
        '[run]\nname = "tiny"\nsteps = 6\nbatch_size = 16\ndevice = "cpu"\n'
        '[evaluation]\nevery = 3\nsamples = 100\n[checkpoint]\nevery = 3\n'
        '[logging]\nprogress = false\ntensorboard = false\n'
    )
    run_dir = tmp_path / "run"
    out = rlgan("train", str(config), "--run-dir", str(run_dir), "--steps", "3", "--seed", "7").stdout
    assert f"run directory {run_dir}" in out and "finished 3 steps" in out
    out = rlgan("train", "--resume", str(run_dir), "--steps", "6").stdout
    assert "resuming" in out and "from step 3" in out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["config"]["run"]["seed"] == 7
    rlgan("sample", str(run_dir), "-o", str(tmp_path / "grid.png"), "-n", "20")
    assert (tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"
    rlgan("sample", str(run_dir), "--format", "npy", "-o", str(tmp_path / "samples.npy"), "-n", "20")
    import numpy as np

    samples = np.load(tmp_path / "samples.npy")
    assert samples.shape == (20, 64) and samples.dtype == np.float32 and np.abs(samples).max() <= 1
    other = tmp_path / "elsewhere"
    other.mkdir()
    written = subprocess.run([sys.executable, "-m", "rlgan_core", "sample", str(run_dir), "-o", "x.npy", "-n", "5"],
                             capture_output=True, text=True, check=True, cwd=other).stdout
    assert np.load(other / "x.npy").shape == (5, 64) and "to x.npy" in written  # the format from the extension
    rlgan("sample", str(run_dir), "-o", str(tmp_path / "g.png"), "--format", "npy", "-n", "5")
    assert np.load(tmp_path / "g.png").shape == (5, 64) and not (tmp_path / "g.png.npy").exists()  # the name given
    wrong = rlgan("sample", str(run_dir), "-o", str(tmp_path / "g.jpg"), check=False)
    assert wrong.returncode == 2 and "rlgan: error: -o" in wrong.stderr and "Traceback" not in wrong.stderr


def test_errors_are_one_clear_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[rewards.nonexistent]\nweight = 1.0\n")
    result = rlgan("train", str(bad), "--run-dir", str(tmp_path / "r"), check=False)
    assert result.returncode == 2
    assert "rlgan: error: no reward named 'nonexistent'" in result.stderr and "Traceback" not in result.stderr


def test_doctor_says_what_runs():
    out = rlgan("doctor").stdout
    assert "kernel backend: auto" in out and "cpu:" in out
    from rlgan_core import extension

    if extension.status().loaded:  # which build, and with which CPU features
        assert f"CPU kernels for {extension.status().build['cpu']}, OpenMP yes" in out


def test_output_into_a_closed_pipe_ends_quietly():
    """`rlgan plugins --json | head -1`: the reader goes away before everything is written."""
    code = "import sys, time; time.sleep(2); from rlgan_core.cli import main; sys.exit(main(['plugins', '--json']))"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    error = process.stderr.read().decode()
    assert process.wait(timeout=60) == 0 and error == "", error


NAN_PLUGIN = """
import torch
from rlgan_core import Reward, hookimpl


class SometimesNaN(Reward):
    def __call__(self, samples, context):
        values = torch.zeros(len(samples), device=samples.device)
        return values.fill_(float("nan")) if context.step % 2 else values


@hookimpl
def rlgan_register_rewards(register):
    register("sometimes_nan", SometimesNaN)
"""


def test_errors_and_warnings_are_lines_of_their_own_after_the_progress_bar(tmp_path):
    (tmp_path / "sometimes_nan.py").write_text(NAN_PLUGIN)
    config = tmp_path / "nan.toml"
    base = ('[run]\nsteps = 6\nbatch_size = 8\ndevice = "cpu"\n{extra}[rewards.sometimes_nan]\n'
            '[evaluation]\nevery = 100\nsamples = 50\n[logging]\nprogress = true\ntensorboard = false\n')
    code = ("import sys, sometimes_nan; from rlgan_core.plugins import get_plugin_manager; "
            "get_plugin_manager().register(sometimes_nan); from rlgan_core.cli import main; sys.exit(main(sys.argv[1:]))")

    def train(extra, name):
        config.write_text(base.format(extra=extra))
        return subprocess.run([sys.executable, "-c", code, "train", str(config), "--run-dir", str(tmp_path / name)],
                              capture_output=True, text=True, cwd=tmp_path)

    failed = train("", "error")
    errors = [line for line in failed.stderr.splitlines() if line.startswith("rlgan: error: ")]
    assert failed.returncode == 2 and len(errors) == 1, failed.stderr
    assert "returned NaN or infinite values (8 of 8)" in errors[0] and 'on_bad_reward = "skip"' in errors[0]
    skipped = train('on_bad_reward = "skip"\nmax_skipped_fraction = 0.9\n', "skip")
    warned = [line for line in skipped.stderr.splitlines() if line.startswith("rlgan: warning: ")]
    assert skipped.returncode == 0 and len(warned) == 1 and "skipping this batch" in warned[0], skipped.stderr
    assert "warnings.warn" not in skipped.stderr and "UserWarning" not in skipped.stderr
