// The rlgan:: operator schemas and the Python module that loads them.
// Kernels live apart: cpu/losses.cpp (CPU) and cuda/losses.cu (CUDA) register their implementations.
#include <Python.h>
#include <torch/library.h>

extern "C" {
// Importing rlgan_core._C runs the static TORCH_LIBRARY registrations below; it has no functions.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

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
}
