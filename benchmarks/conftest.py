"""Shared pieces of the benchmarks: devices, peak-memory measurement, the copy roofline."""

import os
from pathlib import Path

import pytest
import torch
import torch._dynamo

# one compiled function serves every shape of a benchmark file: let it keep a graph per shape
torch._dynamo.config.cache_size_limit = 64

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
if os.environ.get("RLGAN_BENCH_DEVICES"):
    DEVICES = os.environ["RLGAN_BENCH_DEVICES"].split(",")


def synchronize(device):
    if device == "cuda":
        torch.cuda.synchronize()


class PeakMemory:
    """Peak memory above what was in use before: CUDA allocator peak, or peak RSS on Linux."""

    def __init__(self, device):
        self.device = device

    def __enter__(self):
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")  # resets the peak RSS (VmHWM)
            self.start = _rss("VmRSS")
        return self

    def __exit__(self, *exc):
        if self.device == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.start
        else:
            self.peak = _rss("VmHWM") - self.start


def _rss(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def measure(benchmark, fn, setup, device, rounds, extra):
    """Time fn(*setup()) with pytest-benchmark (setup untimed), then record its peak memory."""

    def timed(*args):
        fn(*args)
        synchronize(device)

    for _ in range(2):  # warm-up: compilation, allocator, caches
        timed(*setup())
    benchmark.pedantic(timed, setup=lambda: (setup(), {}), rounds=rounds, iterations=1)
    args = setup()
    synchronize(device)
    with PeakMemory(device) as memory:
        timed(*args)
    benchmark.extra_info.update(extra, peak_memory_bytes=memory.peak, device=device)
    if device == "cuda":
        benchmark.extra_info["device_name"] = torch.cuda.get_device_name()


@pytest.fixture
def measure_fn():
    return measure
