"""Finding the fused kernels: a prebuilt extension, else a one-time ninja build, else the fallback.

``RLGAN_KERNEL`` (or the config's ``[kernel] backend``) chooses:

* ``auto`` (default): fused where the extension has kernels for the tensors' device, fallback
  elsewhere; if no extension can be loaded at all, one warning says why;
* ``fused``: always fused; an error that says why when that is impossible;
* ``fallback``: always the pure-PyTorch implementation.
"""

import importlib
import json
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import build
from .errors import KernelError

BACKENDS = ("auto", "fused", "fallback")

_backend_override = None
_status = None  # the Status, once the extension has been looked for


@dataclass(frozen=True)
class Status:
    loaded: bool
    origin: str  # "prebuilt", "built on first use" or "" when not loaded
    devices: tuple[str, ...]  # device types the extension has kernels for
    reason: str  # why it is not loaded, or ""
    build: dict = field(default_factory=dict)  # rlgan::build_info (torch, openmp, cuda) and cpu: the CPU kernels' set


def set_backend(backend: str | None) -> None:
    """Choose the backend for this process; ``None`` defers to ``RLGAN_KERNEL``."""
    global _backend_override
    if backend is not None and backend not in BACKENDS:
        raise KernelError(f"kernel backend must be one of {BACKENDS}, got {backend!r}")
    _backend_override = backend


def backend() -> str:
    """The backend in force: ``set_backend``'s choice, else ``RLGAN_KERNEL``, else ``auto``."""
    chosen = _backend_override or os.environ.get("RLGAN_KERNEL", "auto")
    if chosen not in BACKENDS:
        raise KernelError(f"RLGAN_KERNEL must be one of {', '.join(BACKENDS)}, got {chosen!r}")
    return chosen


def use_fused(device: torch.device) -> bool:
    """Whether the ops should run the fused kernels for tensors on ``device``."""
    chosen = backend()
    if chosen == "fallback":
        return False
    found = status()
    if device.type in found.devices:
        return True
    if chosen == "fused":
        why = found.reason if not found.loaded else f"the extension was built without {device.type} kernels"
        raise KernelError(f"RLGAN_KERNEL=fused but the fused kernels cannot run on {device.type}: {why}")
    if not found.loaded:
        _warn_once(found.reason)
    return False


def status() -> Status:
    """Load the extension once (the prebuilt module, else a build from ``csrc/`` with ninja) and
    register the ops' autograd formulas and fake implementations (:mod:`rlgan_core.ops`), whichever
    module asked first."""
    global _status
    if _status is None:
        _status = _load()
        if _status.loaded:
            from . import ops

            ops.register_fused_ops()
    return _status


def _load() -> Status:
    try:
        _check_prebuilt_torch()
        from . import _C  # noqa: F401  (loading registers the rlgan:: ops)

        _import_cpu_kernels()
        origin = "prebuilt"
    except ImportError as prebuilt_error:
        try:
            _build_on_first_use()
            origin = "built on first use"
        except Exception as build_error:  # any compiler or toolchain failure
            return Status(False, "", (), f"no usable prebuilt extension ({prebuilt_error}) and building it failed "
                                         f"({_first_line(build_error)})")
    info = dict(item.split("=", 1) for item in torch.ops.rlgan.build_info().split())
    running = build.torch_version()
    if info.get("torch") != running:  # a build older than the version check of _build.json
        return Status(False, "", (), f"the fused kernels were built against torch {info.get('torch')} but torch "
                                     f"{running} is running; {REINSTALL}", info)
    try:
        info["cpu"] = torch.ops.rlgan.cpu_kernels()
    except (AttributeError, RuntimeError):  # no CPU kernels could be imported
        info["cpu"] = "none"
    devices = (("cpu",) if info["cpu"] != "none" else ()) + (("cuda",) if info.get("cuda") == "yes" else ())
    return Status(True, origin, devices, "", info)


REINSTALL = "reinstall rlgan against it: pip install --no-build-isolation --force-reinstall --no-deps rlgan"


def _check_prebuilt_torch() -> None:
    """Refuse (as an ImportError) prebuilt modules made for another PyTorch than the one running,
    before loading them: their binary interface differs, so loading them could crash the process."""
    recorded = Path(__file__).with_name(build.BUILD_FILE)
    if not recorded.exists():
        return
    built = json.loads(recorded.read_text()).get("torch")
    running = build.torch_version()
    if built != running:
        raise ImportError(f"it was built against torch {built} but torch {running} is running; {REINSTALL}")


def _import_cpu_kernels() -> None:
    """Import the prebuilt CPU kernels for the best instruction set this CPU runs (PyTorch's own
    judgement, ``torch.backends.cpu.get_cpu_capability()``), else the next best that imports."""
    order = list(build.X86_CPU_VARIANTS)
    capability = torch.backends.cpu.get_cpu_capability().lower()
    for name in order[order.index(capability):] if capability in order else ["default"]:
        try:
            importlib.import_module(f"{__package__}._cpu_{name}")
            return
        except ImportError:
            continue


def _build_on_first_use():
    from torch.utils import cpp_extension

    if not (build.SOURCE_DIR / "ops.cpp").exists():
        raise RuntimeError(f"the C++ sources are not in {build.SOURCE_DIR} (install rlgan from a source checkout)")
    cuda = torch.cuda.is_available() and build.with_cuda()  # never forced: it serves this process only
    print(f"rlgan: building the fused kernels ({'CPU and CUDA' if cuda else 'CPU'}), first use only...",
          file=sys.stderr, flush=True)  # stderr: stdout may be a command's data (plugins --json)
    cpp_extension.load(
        name="rlgan_fused_ops",
        sources=[str(path) for path in build.sources(cuda)],
        extra_cflags=build.cxx_flags(cuda),
        extra_cuda_cflags=build.nvcc_flags(),
        extra_ldflags=build.link_flags(),
        extra_include_paths=build.include_dirs() if cuda else None,
        with_cuda=cuda,
        is_python_module=False,
        verbose=False,
    )


_warned = False


def _warn_once(reason: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(f"rlgan: using the pure-PyTorch fallback: {reason}", RuntimeWarning, stacklevel=3)


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
