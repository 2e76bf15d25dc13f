// Argument checks shared by the CPU and CUDA kernels (the Python wrapper checks first; these
// keep direct callers of torch.ops.rlgan safe too).
#pragma once
#include <ATen/ATen.h>

namespace rlgan {

enum class Baseline { None, Mean, Whiten };

inline Baseline parse_baseline(c10::string_view name) {
  if (name == "none") return Baseline::None;
  if (name == "mean") return Baseline::Mean;
  TORCH_CHECK_VALUE(name == "whiten", "baseline must be 'none', 'mean' or 'whiten', got '", name, "'");
  return Baseline::Whiten;
}

inline bool parse_mean_reduction(c10::string_view name) {
  TORCH_CHECK_VALUE(name == "mean" || name == "sum", "reduction must be 'mean' or 'sum', got '", name, "'");
  return name == "mean";
}

inline void check_float(const at::Tensor& t, const char* name) {
  TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), name, " must be a floating-point tensor, got ", t.scalar_type());
}

inline void check_gan_inputs(const at::Tensor& d_fake, const at::Tensor& rewards, const at::Tensor& weights) {
  check_float(d_fake, "d_fake");
  check_float(rewards, "rewards");
  check_float(weights, "reward_weights");
  TORCH_CHECK_VALUE(d_fake.dim() == 1 && d_fake.size(0) > 0, "d_fake must have shape [N], N >= 1");
  TORCH_CHECK_VALUE(rewards.dim() == 2 && rewards.size(0) == d_fake.size(0) && rewards.size(1) > 0,
              "rewards must have shape [N, K]");
  TORCH_CHECK_VALUE(weights.dim() == 1 && weights.size(0) == rewards.size(1), "reward_weights must have shape [K]");
  TORCH_CHECK_VALUE(rewards.device() == d_fake.device() && weights.device() == d_fake.device(),
              "all inputs must be on one device");
}

inline void check_policy_inputs(const at::Tensor& logits, const at::Tensor& actions, const at::Tensor& advantages) {
  check_float(logits, "logits");
  check_float(advantages, "advantages");
  TORCH_CHECK_VALUE(logits.dim() == 2 && logits.size(1) > 0, "logits must have shape [N, V], V >= 1");
  TORCH_CHECK_TYPE(actions.scalar_type() == at::kLong || actions.scalar_type() == at::kInt, "actions must be int64 or int32");
  TORCH_CHECK_VALUE(actions.dim() == 1 && actions.size(0) == logits.size(0), "actions must have shape [N]");
  TORCH_CHECK_VALUE(advantages.dim() == 1 && advantages.size(0) == logits.size(0), "advantages must have shape [N]");
  TORCH_CHECK_VALUE(actions.device() == logits.device() && advantages.device() == logits.device(),
              "all inputs must be on one device");
}

// Loss dtype: float64 for float64 inputs, float32 for everything else.
inline at::ScalarType loss_dtype(const at::Tensor& t) {
  return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

}  // namespace rlgan
