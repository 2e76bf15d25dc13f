"""How the fused-kernel extension is built: the one description that ``setup.py`` (``pip install``)
and the build on first use (:mod:`rlgan_core.extension`) both read.

``pip install`` builds a library that runs on any CPU of its architecture: ``rlgan_core._C`` holds
the operator schemas (and the CUDA kernels), and the CPU kernels are built once per instruction
set, as ``rlgan_core._cpu_avx512``, ``_cpu_avx2`` and ``_cpu_default`` (one, ``default``, off
x86-64); at run time the extension imports the best one the CPU runs, as PyTorch judges it
(``torch.backends.cpu.get_cpu_capability()``, which ``ATEN_CPU_CAPABILITY`` can lower).  The build
on first use serves one machine only: one library, its CPU kernels built for that machine
(``-march=native``).

This module imports nothing from ``rlgan_core``: ``setup.py`` loads it by path, before the package
is installed.  Environment variables, read at build time:

* ``RLGAN_CPU_FLAGS``: the CPU flags of the build on first use (default ``-march=native``);
* ``RLGAN_FORCE_CUDA=1``: build the CUDA kernels even when no GPU is visible (``CUDA_HOME`` and
  ``TORCH_CUDA_ARCH_LIST`` then say where nvcc is and which GPUs to build for).
"""

import os
import platform
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent.parent / "csrc"
BUILD_FILE = "_build.json"  # beside the installed modules: the PyTorch they were built against

# The CPU kernels' builds for x86-64, best first, as PyTorch names the instruction sets.
X86_CPU_VARIANTS = {
    "avx512": ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx2", "-mfma", "-mf16c"],
    "avx2": ["-mavx2", "-mfma", "-mf16c"],
    "default": [],
}


def with_cuda() -> bool:
    """Whether to build the CUDA kernels: torch has CUDA, nvcc is found, and a GPU is visible (or forced)."""
    import torch
    from torch.utils import cpp_extension

    return (
        torch.version.cuda is not None
        and cpp_extension.CUDA_HOME is not None
        and (torch.cuda.is_available() or os.environ.get("RLGAN_FORCE_CUDA") == "1")
    )


def cpu_variants() -> dict[str, list[str]]:
    """Instruction set -> the flags of its build of the CPU kernels, for ``pip install``."""
    if platform.machine().lower() in ("x86_64", "amd64"):
        return X86_CPU_VARIANTS
    return {"default": []}


def cpu_sources(variant: str | None = None) -> list[Path]:
    """The CPU kernels' sources: for ``pip install``'s build for instruction set ``variant``, its
    file in ``cpu/builds/`` (one object file per build); without, the kernels themselves."""
    if variant is not None:
        return [SOURCE_DIR / "cpu" / "builds" / f"{variant}.cpp"]
    return sorted((SOURCE_DIR / "cpu").glob("*.cpp"))


def core_sources(cuda: bool) -> list[Path]:
    """The sources of ``rlgan_core._C``: the schemas, plus the CUDA kernels when ``cuda``."""
    return [SOURCE_DIR / "ops.cpp", *(sorted((SOURCE_DIR / "cuda").glob("*.cu")) if cuda else [])]


def sources(cuda: bool) -> list[Path]:
    """Every source, for the one library of the build on first use."""
    return [*core_sources(cuda), *cpu_sources()]


def torch_version() -> str:
    """The running PyTorch's ``major.minor``: what a build is made against, and checked against."""
    import torch

    return ".".join(torch.__version__.split(".")[:2])


def cxx_flags(cuda: bool, cpu: list[str] | None = None) -> list[str]:
    """C++ flags: OpenMP (at::parallel_for spreads rows over cores only with it), the CPU flags
    ``cpu`` (by default those of the build on first use), and what ``rlgan::build_info`` reports."""
    major, minor = torch_version().split(".")
    return [
        "-O3",
        "-fopenmp",
        *(os.environ.get("RLGAN_CPU_FLAGS", "-march=native").split() if cpu is None else cpu),
        f"-DRLGAN_TORCH_MAJOR={int(major)}",
        f"-DRLGAN_TORCH_MINOR={int(minor)}",
        *(["-DRLGAN_WITH_CUDA"] if cuda else []),
    ]


def nvcc_flags() -> list[str]:
    return ["-O3", "--use_fast_math", "-lineinfo"]


def link_flags() -> list[str]:
    return ["-fopenmp"]


def include_dirs() -> list[str]:
    """Headers of CUDA libraries installed as pip packages (nvidia-*), for toolkits without them."""
    import importlib.util

    spec = importlib.util.find_spec("nvidia")
    roots = spec.submodule_search_locations if spec else []
    return sorted({str(header.parent) for root in roots for header in Path(root).glob("*/include/cusparse.h")})
