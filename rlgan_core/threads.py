"""How many CPU threads PyTorch's operators use: ``[run] threads``, PyTorch's and OpenMP's
settings, in one place.

PyTorch starts as many threads as the machine has cores.  Two such processes on the same cores
(two runs, or a run beside another busy program) wait on each other's threads and can run ten
times slower than either alone.  So by default (``threads = 0``) a run takes the cores this
process may use, less those other processes keep busy right now, shared among the training
processes on this machine (``--nproc``), at least one.  An explicit ``OMP_NUM_THREADS`` is
respected, and ``[run] threads = N`` overrides both.
"""

import functools
import os
import time

import torch


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@functools.cache
def cores_busy_elsewhere(seconds: float = 0.1) -> float:
    """How many cores other processes keep busy, measured once over ``seconds`` from Linux's
    ``/proc`` (0.0 where it cannot be read)."""

    def sample() -> tuple[int, int, int]:
        with open("/proc/stat") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
        with open("/proc/self/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        return sum(values) - idle, sum(values), int(fields[11]) + int(fields[12])  # busy, all, this process

    try:
        before = sample()
        time.sleep(seconds)
        after = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    busy, total, own = (a - b for a, b in zip(after, before))
    if total <= 0:
        return 0.0
    return max(0.0, (busy - own) / total * (os.cpu_count() or 1))


def local_processes() -> int:
    """Training processes on this machine (torchrun's ``LOCAL_WORLD_SIZE``; 1 without it)."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def choose(requested: int = 0) -> tuple[int, str]:
    """The thread count for ``[run] threads = requested``, and why."""
    if requested:
        return requested, "[run] threads"
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads(), "OMP_NUM_THREADS"
    cores, busy, processes = usable_cores(), cores_busy_elsewhere(), local_processes()
    threads = max(1, round(cores - busy) // processes)
    return threads, f"{cores} cores, {busy:.1f} busy with other processes, {processes} training process(es) here"


def apply(requested: int = 0) -> int:
    """Set PyTorch's operator threads as :func:`choose` says; the count set."""
    threads, _ = choose(requested)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
