"""Builds rlgan_core._C, the fused loss kernels: CPU always, CUDA when torch has CUDA and nvcc is found.

Sources and flags come from rlgan_core/build.py, which the build on first use reads too.
RLGAN_NO_EXTENSION=1 skips the build (the pure-PyTorch fallback then runs); the variables that
change the build itself are documented in rlgan_core/build.py.
"""

import importlib.util
import os
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent


def load_build_description():
    spec = importlib.util.spec_from_file_location("rlgan_build", ROOT / "rlgan_core" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def extensions():
    if os.environ.get("RLGAN_NO_EXTENSION") == "1":
        return [], {}
    from torch.utils import cpp_extension

    build = load_build_description()
    cuda = build.with_cuda()
    sources = [str(path.relative_to(ROOT)) for path in build.sources(cuda)]
    if cuda:
        extension = cpp_extension.CUDAExtension(
            "rlgan_core._C",
            sources,
            include_dirs=build.include_dirs(),
            extra_compile_args={"cxx": build.cxx_flags(cuda), "nvcc": build.nvcc_flags()},
            extra_link_args=build.link_flags(),
        )
    else:
        extension = cpp_extension.CppExtension(
            "rlgan_core._C", sources, extra_compile_args={"cxx": build.cxx_flags(cuda)},
            extra_link_args=build.link_flags(),
        )
    return [extension], {"build_ext": cpp_extension.BuildExtension}


ext_modules, cmdclass = extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
