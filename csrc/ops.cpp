// The rlgan:: operator schemas and the Python module that loads them.
// Kernels live apart: cpu/losses.cpp (CPU) and cuda/losses.cu (CUDA) register their implementations.
#include <Python.h>
#include <torch/library.h>

#include <string>

extern "C" {
// Importing rlgan_core._C runs the static TORCH_LIBRARY registrations below; it has no functions.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

#define RLGAN_STRING(x) #x
#define RLGAN_VERSION_STRING(major, minor) RLGAN_STRING(major) "." RLGAN_STRING(minor)

namespace rlgan {

// What this build holds, as space-separated key=value pairs: the PyTorch it was compiled against
// (major.minor, from RLGAN_TORCH_MAJOR and RLGAN_TORCH_MINOR, which rlgan_core/build.py sets),
// whether OpenMP spreads rows over cores, and whether it has CUDA kernels.  rlgan_core.extension
// reads it (no private PyTorch API needed) and `rlgan doctor` prints it; the CPU kernels' own
// instruction set is rlgan::cpu_kernels (cpu/losses.cpp).
std::string build_info() {
#ifdef _OPENMP
  const char* openmp = "yes";
#else
  const char* openmp = "no";
#endif
#ifdef RLGAN_WITH_CUDA
  const char* cuda = "yes";
#else
  const char* cuda = "no";
#endif
  return std::string("torch=") + RLGAN_VERSION_STRING(RLGAN_TORCH_MAJOR, RLGAN_TORCH_MINOR) + " openmp=" + openmp + " cuda=" + cuda;
}

}  // namespace rlgan

TORCH_LIBRARY(rlgan, m) {
  // Returns (loss, d loss / d d_fake); the gradient is empty when with_grad is false.
  m.def(
      "reward_weighted_gan_loss(Tensor d_fake, Tensor rewards, Tensor reward_weights, str baseline, "
      "float temperature, float eps, bool with_grad) -> (Tensor, Tensor)");
  // Returns (loss, d loss / d logits); the gradient is empty when with_grad is false.
  m.def(
      "policy_gradient_loss(Tensor logits, Tensor actions, Tensor advantages, float entropy_coef, "
      "int ignore_index, str reduction, bool with_grad) -> (Tensor, Tensor)");
  // Returns the loss and overwrites logits with d loss / d logits.
  m.def(
      "policy_gradient_loss_(Tensor(a!) logits, Tensor actions, Tensor advantages, float entropy_coef, "
      "int ignore_index, str reduction) -> Tensor");
  // The same two kernels under names with no autograd formula: the Python wrappers' eager path
  // calls these from its own autograd.Function (rlgan_core/ops.py), so that a call does not also
  // pass through the Python layer of the formula registered for the ops above.
  m.def(
      "reward_weighted_gan_loss_eager(Tensor d_fake, Tensor rewards, Tensor reward_weights, str baseline, "
      "float temperature, float eps, bool with_grad) -> (Tensor, Tensor)");
  m.def(
      "policy_gradient_loss_eager(Tensor logits, Tensor actions, Tensor advantages, float entropy_coef, "
      "int ignore_index, str reduction, bool with_grad) -> (Tensor, Tensor)");
  // grad *= scale / previous on the device, skipped there when they are equal (CUDA only: the
  // backward pass of the fused losses uses it to avoid reading the incoming gradient on the host).
  m.def("scale_gradient_(Tensor(a!) grad, Tensor scale, Tensor? previous) -> ()");
  m.def("build_info() -> str", &rlgan::build_info);
}
