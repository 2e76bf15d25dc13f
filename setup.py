"""Builds rlgan_core._C, the fused loss kernels: CPU always, CUDA when torch has CUDA and nvcc is found.

RLGAN_NO_EXTENSION=1 skips the build (the pure-PyTorch fallback then runs);
RLGAN_CPU_FLAGS overrides the CPU architecture flags (default: -march=native);
RLGAN_FORCE_CUDA=1 builds the CUDA kernels even when no GPU is visible (CUDA_HOME and
TORCH_CUDA_ARCH_LIST say where nvcc is and which GPUs to build for).
"""

import os
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent


def extensions():
    if os.environ.get("RLGAN_NO_EXTENSION") == "1":
        return [], {}
    import torch
    from torch.utils import cpp_extension

    sources = [str(p.relative_to(ROOT)) for p in [ROOT / "csrc" / "ops.cpp", *sorted((ROOT / "csrc" / "cpu").glob("*.cpp"))]]
    # -fopenmp: at::parallel_for runs rows on all cores only when the extension is built with OpenMP
    cxx = ["-O3", "-fopenmp", *os.environ.get("RLGAN_CPU_FLAGS", "-march=native").split()]
    with_cuda = torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None and (
        torch.cuda.is_available() or os.environ.get("RLGAN_FORCE_CUDA") == "1"
    )
    if with_cuda:
        sources += [str(p.relative_to(ROOT)) for p in sorted((ROOT / "csrc" / "cuda").glob("*.cu"))]
        extension = cpp_extension.CUDAExtension(
            "rlgan_core._C",
            sources,
            include_dirs=pip_cuda_include_dirs(),
            extra_compile_args={"cxx": cxx, "nvcc": ["-O3", "--use_fast_math", "-lineinfo"]},
            extra_link_args=["-fopenmp"],
        )
    else:
        extension = cpp_extension.CppExtension(
            "rlgan_core._C", sources, extra_compile_args={"cxx": cxx}, extra_link_args=["-fopenmp"]
        )
    return [extension], {"build_ext": cpp_extension.BuildExtension}


def pip_cuda_include_dirs():
    """Headers of CUDA libraries installed as pip packages (nvidia-*), for toolkits without them."""
    import importlib.util

    spec = importlib.util.find_spec("nvidia")
    roots = spec.submodule_search_locations if spec else []
    return sorted({str(header.parent) for root in roots for header in Path(root).glob("*/include/cusparse.h")})


ext_modules, cmdclass = extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
