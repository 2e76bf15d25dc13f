"""Finding the fused kernels: a prebuilt extension, else a one-time ninja build, else the fallback.

``RLGAN_KERNEL`` (or the config's ``[kernel] backend``) chooses:

* ``auto`` (default): fused where the extension has kernels for the tensors' device, fallback
  elsewhere; if no extension can be loaded at all, one warning says why;
* ``fused``: always fused; an error that says why when that is impossible;
* ``fallback``: always the pure-PyTorch implementation.
"""

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import KernelError

BACKENDS = ("auto", "fused", "fallback")
SOURCE_DIR = Path(__file__).resolve().parent.parent / "csrc"

_on_load = []
_backend_override = None
_status = None  # the Status, once the extension has been looked for


@dataclass(frozen=True)
class Status:
    loaded: bool
    origin: str  # "prebuilt", "built on first use" or "" when not loaded
    devices: tuple[str, ...]  # device types the extension has kernels for
    reason: str  # why it is not loaded, or ""


def on_load(callback) -> None:
    """Run ``callback()`` once the extension's ops exist (immediately if they already do)."""
    _on_load.append(callback)
    if _status is not None and _status.loaded:
        callback()


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
    """Load the extension once: the prebuilt module, else build it from ``csrc/`` with ninja."""
    global _status
    if _status is None:
        _status = _load()
    return _status


def _load() -> Status:
    try:
        from . import _C  # noqa: F401  (loading registers the rlgan:: ops)

        origin = "prebuilt"
    except ImportError as prebuilt_error:
        try:
            _build_on_first_use()
            origin = "built on first use"
        except Exception as build_error:  # any compiler or toolchain failure
            return Status(
                False,
                "",
                (),
                f"no prebuilt extension ({prebuilt_error}) and building it failed ({_first_line(build_error)})",
            )
    devices = tuple(
        device
        for device, key in (("cpu", "CPU"), ("cuda", "CUDA"))
        if torch._C._dispatch_has_kernel_for_dispatch_key("rlgan::policy_gradient_loss", key)
    )
    for callback in _on_load:
        callback()
    return Status(True, origin, devices, "")


def _build_on_first_use():
    from torch.utils import cpp_extension

    if not (SOURCE_DIR / "ops.cpp").exists():
        raise RuntimeError(f"the C++ sources are not in {SOURCE_DIR} (install rlgan from a source checkout)")
    sources = sorted(str(path) for path in (SOURCE_DIR / "cpu").glob("*.cpp")) + [str(SOURCE_DIR / "ops.cpp")]
    with_cuda = torch.cuda.is_available() and cpp_extension.CUDA_HOME is not None
    if with_cuda:
        sources += sorted(str(path) for path in (SOURCE_DIR / "cuda").glob("*.cu"))
    print(f"rlgan: building the fused kernels ({'CPU and CUDA' if with_cuda else 'CPU'}), first use only...", flush=True)
    cpp_extension.load(
        name="rlgan_fused_ops",
        sources=sources,
        extra_cflags=["-O3"],
        extra_cuda_cflags=["-O3", "--use_fast_math"],
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
