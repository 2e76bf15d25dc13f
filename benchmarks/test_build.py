"""The extension built on first use against the prebuilt one (``pip install``): both come from the
one build description, ``rlgan_core/build.py``, so they should run at the same speed.

Two builds of one library cannot share a process, so each runs in a worker process of its own; the
worker with ``first_use`` hides the prebuilt module, so that ``rlgan_core.extension`` builds the
kernels from ``csrc/`` (into a fresh ``TORCH_EXTENSIONS_DIR``: the real first use, a minute or two
of compiling).  Each round times one policy-loss forward+backward in the worker, through a pipe
(the pipe adds well under a millisecond to calls of tens of milliseconds).
"""

import json
import os
import subprocess
import sys

import pytest

N, V = 4096, 32000

WORKER = r"""
import json, sys
if sys.argv[1] == "first_use":
    sys.modules["rlgan_core._C"] = None  # no prebuilt module: the extension is built from csrc/
import torch
from rlgan_core import extension, ops

status = extension.status()
extension.set_backend("fused")
torch.manual_seed(0)
source = torch.randn(int(sys.argv[2]), int(sys.argv[3]))
actions = torch.randint(0, source.shape[1], (source.shape[0],))
advantages = torch.randn(source.shape[0])
print(json.dumps({"origin": status.origin, "build": status.build}), flush=True)
x = None
for command in sys.stdin:
    if command.strip() == "setup":
        x = source.clone().requires_grad_()
    else:
        ops.policy_gradient_loss(x, actions, advantages, entropy_coef=0.01).backward()
    print("ok", flush=True)
"""


@pytest.mark.parametrize("origin", ["prebuilt", "first_use"])
def test_first_use_build_runs_as_fast_as_the_prebuilt_one(benchmark, tmp_path, origin):
    benchmark.group = f"policy_gradient_loss N={N} V={V} float32 cpu forward_backward: prebuilt vs built on first use"
    env = dict(os.environ, TORCH_EXTENSIONS_DIR=str(tmp_path))
    worker = subprocess.Popen([sys.executable, "-c", WORKER, origin, str(N), str(V)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        loaded = json.loads(worker.stdout.readline())
        assert loaded["origin"] == {"prebuilt": "prebuilt", "first_use": "built on first use"}[origin], loaded

        def ask(command):
            worker.stdin.write(command + "\n")
            worker.stdin.flush()
            assert worker.stdout.readline().strip() == "ok"

        for _ in range(2):  # warm-up
            ask("setup")
            ask("run")
        benchmark.pedantic(ask, setup=lambda: (ask("setup"), (("run",), {}))[1], rounds=10, iterations=1)
        benchmark.extra_info.update(implementation=origin, n=N, v=V, mode="forward_backward", **loaded["build"])
    finally:
        worker.stdin.close()
        worker.wait(timeout=60)
