"""The thread policy: [run] threads, OMP_NUM_THREADS, and the free cores shared among processes."""

import pytest
import torch

from rlgan_core import threads
from rlgan_core.errors import ConfigError
from helpers import tiny_config


def test_threads_are_the_free_cores_shared_among_the_processes_here(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    monkeypatch.setattr(threads, "cores_busy_elsewhere", lambda: 2.2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert threads.choose() == (3, "8 cores, 2.2 busy with other processes, 2 training process(es) here")
    monkeypatch.setattr(threads, "cores_busy_elsewhere", lambda: 7.9)
    assert threads.choose()[0] == 1  # never fewer than one
    assert threads.choose(5) == (5, "[run] threads")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.choose() == (torch.get_num_threads(), "OMP_NUM_THREADS")


def test_a_run_sets_and_reports_its_threads(tmp_path):
    from rlgan_core.engine import Engine

    before = torch.get_num_threads()
    try:
        engine = Engine(tiny_config(run={"steps": 1, "threads": 1}), tmp_path)
        assert torch.get_num_threads() == 1 and engine.run()["threads"] == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="run.threads: must be 0 or more"):
        tiny_config(run={"threads": -1})

