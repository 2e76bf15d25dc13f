"""Builds the fused loss kernels: ``rlgan_core._C`` (the operator schemas; the CUDA kernels when
torch has CUDA and nvcc is found) and one module of CPU kernels per instruction set, of which the
extension imports the best the CPU runs.  Build against the PyTorch you run, that is with
``pip install --no-build-isolation`` after installing torch; the versions are checked at load.

Sources and flags come from rlgan_core/build.py, which the build on first use reads too.
RLGAN_NO_EXTENSION=1 skips the build (the pure-PyTorch fallback then runs); the variables that
change the build itself are documented in rlgan_core/build.py.
"""

import importlib.util
import json
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

    def relative(paths):
        return [str(path.relative_to(ROOT)) for path in paths]

    core_args = dict(extra_compile_args={"cxx": build.cxx_flags(cuda, cpu=[]), "nvcc": build.nvcc_flags()},
                     extra_link_args=build.link_flags())
    if cuda:
        core = cpp_extension.CUDAExtension("rlgan_core._C", relative(build.core_sources(True)),
                                           include_dirs=build.include_dirs(), **core_args)
    else:
        core_args["extra_compile_args"] = core_args["extra_compile_args"]["cxx"]
        core = cpp_extension.CppExtension("rlgan_core._C", relative(build.core_sources(False)), **core_args)
    cpu_kernels = [
        cpp_extension.CppExtension(
            f"rlgan_core._cpu_{name}", relative(build.cpu_sources(name)),
            extra_compile_args=[*build.cxx_flags(False, cpu=flags), f"-DRLGAN_CPU_MODULE=_cpu_{name}"],
            extra_link_args=build.link_flags(),
        )
        for name, flags in build.cpu_variants().items()
    ]

    # the modules build side by side; ninja would write one build file for all of them
    class BuildExtension(cpp_extension.BuildExtension.with_options(use_ninja=False)):
        """Builds the modules side by side, then records the PyTorch they were built against."""

        def finalize_options(self):
            super().finalize_options()
            self.parallel = self.parallel or os.cpu_count()

        def run(self):
            super().run()
            target = Path(self.get_ext_fullpath("rlgan_core._C")).with_name(build.BUILD_FILE)
            target.write_text(json.dumps({"torch": build.torch_version(), "cuda": cuda,
                                          "cpu_kernels": list(build.cpu_variants())}) + "\n")

    return [core, *cpu_kernels], {"build_ext": BuildExtension}


ext_modules, cmdclass = extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
