"""`rlgan new-plugin`: every kind of plugin it writes installs with pip, is listed, passes its own
tests (the conformance kit and a short run) at once."""

import os
import subprocess
import sys

import pytest

from rlgan_core.scaffold import KINDS


@pytest.mark.parametrize("kind", KINDS)
def test_a_new_plugin_installs_is_listed_and_passes_its_own_tests(tmp_path, kind):
    name = f"rlgan-{kind}-example"
    made = subprocess.run([sys.executable, "-m", "rlgan_core", "new-plugin", name, "--kind", kind, "--dir", str(tmp_path)],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert "*.egg-info/" in (tmp_path / name / ".gitignore").read_text().split()
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(site), str(tmp_path / name)], check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    listed = subprocess.run([sys.executable, "-m", "rlgan_core", "plugins"], capture_output=True, text=True, env=env)
    assert f"{kind}_example  ({name} 0.1.0)" in listed.stdout and "BROKEN" not in listed.stdout
    tested = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / name / "tests")],
                            capture_output=True, text=True, env=env, cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    again = subprocess.run([sys.executable, "-m", "rlgan_core", "new-plugin", name, "--dir", str(tmp_path)],
                           capture_output=True, text=True)
    assert again.returncode == 2 and "exists already" in again.stderr


@pytest.mark.parametrize("name", ["rlgan-ConvPolicy", "rlgan-conv-policy", "rlgan_conv_policy"])
def test_the_plugin_class_is_named_as_the_user_wrote_it(tmp_path, name):
    from rlgan_core.scaffold import new_plugin

    folder = new_plugin(name, "model", tmp_path)
    module = name.replace("-", "_").lower()
    assert "class ConvPolicy(" in (folder / f"{module}.py").read_text()
