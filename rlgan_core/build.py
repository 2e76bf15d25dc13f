"""How the fused-kernel extension is built: the one description that ``setup.py`` (``pip install``)
and the build on first use (:mod:`rlgan_core.extension`) both read, so both produce the same
library with the same flags.

This module imports nothing from ``rlgan_core``: ``setup.py`` loads it by path, before the package
is installed.  Environment variables, read at build time:

* ``RLGAN_CPU_FLAGS``: the CPU architecture flags (default ``-march=native``);
* ``RLGAN_FORCE_CUDA=1``: build the CUDA kernels even when no GPU is visible (``CUDA_HOME`` and
  ``TORCH_CUDA_ARCH_LIST`` then say where nvcc is and which GPUs to build for).
"""

import os
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent.parent / "csrc"


def with_cuda() -> bool:
    """Whether to build the CUDA kernels: torch has CUDA, nvcc is found, and a GPU is visible (or forced)."""
    import torch
    from torch.utils import cpp_extension

    return (
        torch.version.cuda is not None
        and cpp_extension.CUDA_HOME is not None
        and (torch.cuda.is_available() or os.environ.get("RLGAN_FORCE_CUDA") == "1")
    )


def sources(cuda: bool) -> list[Path]:
    """The C++ sources, plus the CUDA ones when ``cuda``."""
    found = [SOURCE_DIR / "ops.cpp", *sorted((SOURCE_DIR / "cpu").glob("*.cpp"))]
    if cuda:
        found += sorted((SOURCE_DIR / "cuda").glob("*.cu"))
    return found


def cxx_flags(cuda: bool) -> list[str]:
    """C++ flags: OpenMP (at::parallel_for spreads rows over cores only with it), the CPU's vector
    instructions, and what ``rlgan::build_info`` reports."""
    import torch

    major, minor = torch.__version__.split(".")[:2]
    return [
        "-O3",
        "-fopenmp",
        *os.environ.get("RLGAN_CPU_FLAGS", "-march=native").split(),
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
