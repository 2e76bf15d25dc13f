// The CPU kernels (../losses.cpp) as the module rlgan_core._cpu_default: a file of its own per instruction
// set, so that pip install compiles each build to an object of its own (flags: rlgan_core/build.py).
#include "../losses.cpp"
