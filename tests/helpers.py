"""Small configs and helpers shared by the tests."""

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
