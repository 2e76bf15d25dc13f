"""Small configs and helpers shared by the tests."""

import subprocess
import sys

from rlgan_core.config import parse_config
from rlgan_core.testing import quick_config


def tiny_config(**sections):
    """The conformance kit's quick digits config, run for 20 steps with frequent checkpoints, as a
    Config; each of ``sections`` extends its table (``rewards`` replaces the rewards)."""
    raw = quick_config(run={"name": "tiny", "steps": 20}, evaluation={"every": 10, "samples": 200},
                       checkpoint={"every": 5, "keep": 2}, logging={"every": 5})
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values} if name != "rewards" else values
    return parse_config(raw, "test")


def rlgan(*args, check=True, **options) -> subprocess.CompletedProcess:
    """``rlgan ARGS`` in a fresh interpreter, its output captured as text."""
    return subprocess.run([sys.executable, "-m", "rlgan_core", *args], capture_output=True, text=True, check=check, **options)
