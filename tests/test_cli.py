import json
import subprocess
import sys


def rlgan(*args, check=True):
    return subprocess.run([sys.executable, "-m", "rlgan_core", *args], capture_output=True, text=True, check=check)


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
