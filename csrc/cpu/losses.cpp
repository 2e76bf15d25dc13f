// CPU kernels of the rlgan:: losses: rows in parallel (at::parallel_for), vectorised with
// at::vec::Vectorized.  The derivation and the numerics are in docs/kernels.md.
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__)
#define CPU_CAPABILITY_AVX512
#elif defined(__AVX2__) && defined(__FMA__)
#define CPU_CAPABILITY_AVX2
#endif

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <vector>

#include "../checks.h"

namespace rlgan {
namespace {

// ---------------------------------------------------------------------------------------------
// reward_weighted_gan_loss: N is small (a batch); one pass per statistic, in double.

std::tuple<at::Tensor, at::Tensor> gan_loss_cpu(const at::Tensor& d_fake_in, const at::Tensor& rewards_in,
                                                const at::Tensor& weights_in, c10::string_view baseline_name,
                                                double temperature, double eps, bool with_grad) {
  check_gan_inputs(d_fake_in, rewards_in, weights_in);
  const Baseline baseline = parse_baseline(baseline_name);
  const auto d_fake = d_fake_in.contiguous();
  const auto rewards = rewards_in.to(at::kDouble).contiguous();
  const auto weights = weights_in.to(at::kDouble).contiguous();
  const int64_t n = d_fake.size(0), k = rewards.size(1);
  const double* r_ptr = rewards.const_data_ptr<double>();
  const double* w_ptr = weights.const_data_ptr<double>();

  std::vector<double> score(n);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    double r = 0.0;
    for (int64_t j = 0; j < k; ++j) r += r_ptr[i * k + j] * w_ptr[j];
    TORCH_CHECK_VALUE(std::isfinite(r), "rewards contain NaN or infinite values (row ", i, ")");
    score[i] = r;
    sum += r;
  }
  const double mean = sum / n;
  double shift = 0.0, scale = 1.0;
  if (baseline != Baseline::None) shift = mean;
  if (baseline == Baseline::Whiten) {
    double squares = 0.0;
    for (int64_t i = 0; i < n; ++i) squares += (score[i] - mean) * (score[i] - mean);
    scale = 1.0 / (std::sqrt(squares / n) + eps);
  }
  // c_i = N softmax(temperature * A)_i, computed stably around the largest exponent.
  double top = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    score[i] = temperature * (score[i] - shift) * scale;
    top = std::max(top, score[i]);
  }
  double normaliser = 0.0;
  for (int64_t i = 0; i < n; ++i) normaliser += std::exp(score[i] - top);

  auto loss = at::empty({}, d_fake.options().dtype(loss_dtype(d_fake)));
  auto grad = with_grad ? at::empty_like(d_fake) : at::empty({0}, d_fake.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, d_fake.scalar_type(), "gan_loss_cpu", [&] {
    const scalar_t* d = d_fake.const_data_ptr<scalar_t>();
    scalar_t* g = with_grad ? grad.mutable_data_ptr<scalar_t>() : nullptr;
    double total = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const double c = n * std::exp(score[i] - top) / normaliser;
      const double x = static_cast<double>(d[i]);
      // softplus(-x) = max(-x, 0) + log1p(exp(-|x|)); sigmoid(-x) = exp(-softplus(x))
      total += c * (std::max(-x, 0.0) + std::log1p(std::exp(-std::abs(x))));
      if (g) g[i] = static_cast<scalar_t>(-(c / n) / (1.0 + std::exp(x)));
    }
    if (loss.scalar_type() == at::kDouble)
      *loss.mutable_data_ptr<double>() = total / n;
    else
      *loss.mutable_data_ptr<float>() = static_cast<float>(total / n);
  });
  return {loss, grad};
}

// ---------------------------------------------------------------------------------------------
// policy_gradient_loss: per row, one pass for the maximum, one that stores e = exp(x - max) in
// a row-sized scratch buffer while summing e and e (x - max), one that writes the gradient.
// The row stays in cache between passes, so memory sees one read of x and one write of the
// gradient.  T is the arithmetic type: float (for float, half, bfloat16 inputs) or double.

template <typename T>
inline T row_max(const T* x, int64_t v_size) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t W = Vec::size();
  Vec best(-std::numeric_limits<T>::infinity());
  int64_t v = 0;
  for (; v + W <= v_size; v += W) best = at::vec::maximum(best, Vec::loadu(x + v));
  T m = at::vec::vec_reduce_all<T>([](Vec& a, Vec& b) { return at::vec::maximum(a, b); }, best);
  for (; v < v_size; ++v) m = std::max(m, x[v]);
  return m;
}

// Gradient for one row into out (which may be x itself); returns the row's loss term.
template <typename T>
inline T policy_row(const T* x, T* out, T* e, int64_t v_size, int64_t action, T advantage, T entropy_coef,
                    T scale) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t W = Vec::size();
  const bool with_entropy = entropy_coef != T(0);
  const T m = row_max(x, v_size);
  // e = exp(x - m); shifted = max(x - m, lowest) so that exp(-inf) * shifted is 0, not NaN.
  const Vec vm(m), lowest(std::numeric_limits<T>::lowest());
  // Two vectors per iteration, each with its own accumulators, for instruction-level parallelism.
  Vec vs0(0), vt0(0), vs1(0), vt1(0);
  int64_t v = 0;
  for (; v + 2 * W <= v_size; v += 2 * W) {
    const Vec shifted0 = at::vec::clamp_min(Vec::loadu(x + v) - vm, lowest);
    const Vec shifted1 = at::vec::clamp_min(Vec::loadu(x + v + W) - vm, lowest);
    const Vec ex0 = shifted0.exp_u20(), ex1 = shifted1.exp_u20();
    ex0.store(e + v);
    ex1.store(e + v + W);
    vs0 = vs0 + ex0;
    vs1 = vs1 + ex1;
    if (with_entropy) {
      vt0 = at::vec::fmadd(ex0, shifted0, vt0);
      vt1 = at::vec::fmadd(ex1, shifted1, vt1);
    }
  }
  for (; v + W <= v_size; v += W) {
    const Vec shifted0 = at::vec::clamp_min(Vec::loadu(x + v) - vm, lowest);
    const Vec ex0 = shifted0.exp_u20();
    ex0.store(e + v);
    vs0 = vs0 + ex0;
    if (with_entropy) vt0 = at::vec::fmadd(ex0, shifted0, vt0);
  }
  T s = at::vec::vec_reduce_all<T>([](Vec& a, Vec& b) { return a + b; }, vs0 + vs1);
  T t = at::vec::vec_reduce_all<T>([](Vec& a, Vec& b) { return a + b; }, vt0 + vt1);
  for (; v < v_size; ++v) {
    const T shifted = std::max(x[v] - m, std::numeric_limits<T>::lowest());
    e[v] = std::exp(shifted);
    s += e[v];
    t += e[v] * shifted;
  }
  const T log_s = std::log(s);
  const T entropy = with_entropy ? log_s - t / s : T(0);
  const T log_p_action = std::max(x[action] - m, std::numeric_limits<T>::lowest()) - log_s;
  const T loss = -advantage * log_p_action - entropy_coef * entropy;
  if (out == nullptr) return loss;

  // grad_v = scale [A (p_v - [v == a]) + beta p_v (log p_v + H)], p_v = e_v / s.
  const T inv_s = T(1) / s;
  const Vec v_a(scale * advantage * inv_s), v_b(scale * entropy_coef * inv_s), v_inv_s(inv_s);
  const Vec v_bias(entropy - log_s);
  v = 0;
  if (with_entropy) {
    for (; v + W <= v_size; v += W) {
      const Vec ex = Vec::loadu(e + v);
      // log p_v + H = (x - m) - log s + H, with x - m clamped as above so that p_v = 0 gives 0
      const Vec log_p_plus_h = at::vec::clamp_min(Vec::loadu(x + v) - vm, lowest) + v_bias;
      at::vec::fmadd(ex * v_b, log_p_plus_h, ex * v_a).store(out + v);
    }
    for (; v < v_size; ++v) {
      const T log_p_plus_h = std::max(x[v] - m, std::numeric_limits<T>::lowest()) + entropy - log_s;
      out[v] = e[v] * scale * inv_s * (advantage + entropy_coef * log_p_plus_h);
    }
  } else {
    for (; v + W <= v_size; v += W) (Vec::loadu(e + v) * v_a).store(out + v);
    for (; v < v_size; ++v) out[v] = e[v] * scale * advantage * inv_s;
  }
  out[action] -= scale * advantage;
  return loss;
}

// Count valid rows, checking every action.
template <typename index_t>
int64_t count_valid(const at::Tensor& actions, int64_t v_size, int64_t ignore_index) {
  const index_t* a = actions.const_data_ptr<index_t>();
  int64_t valid = 0;
  for (int64_t i = 0; i < actions.size(0); ++i) {
    if (a[i] == ignore_index) continue;
    TORCH_CHECK(a[i] >= 0 && a[i] < v_size, "actions must lie in [0, ", v_size, ") or equal ignore_index=",
                ignore_index, "; got ", a[i], " at row ", i);
    ++valid;
  }
  return valid;
}

// Runs the kernel over all rows. grad may be undefined (loss only) or alias logits (in place).
at::Tensor policy_loss_impl(const at::Tensor& logits, const at::Tensor& actions_in, const at::Tensor& advantages_in,
                            double entropy_coef, int64_t ignore_index, bool mean, at::Tensor grad) {
  const int64_t n = logits.size(0), v_size = logits.size(1);
  const auto actions = actions_in.to(at::kLong).contiguous();
  const int64_t valid = count_valid<int64_t>(actions, v_size, ignore_index);
  const auto acc_type = loss_dtype(logits);
  const auto advantages = advantages_in.to(acc_type).contiguous();
  auto row_losses = at::zeros({n}, logits.options().dtype(acc_type));
  const int64_t* a_ptr = actions.const_data_ptr<int64_t>();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "policy_loss_cpu", [&] {
    using T = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    constexpr bool convert = !std::is_same_v<scalar_t, T>;
    const T scale = mean ? T(1) / std::max<int64_t>(valid, 1) : T(1);
    const T beta = static_cast<T>(entropy_coef);
    const scalar_t* x_ptr = logits.const_data_ptr<scalar_t>();
    scalar_t* g_ptr = grad.defined() ? grad.data_ptr<scalar_t>() : nullptr;
    const T* adv = advantages.const_data_ptr<T>();
    T* losses = row_losses.mutable_data_ptr<T>();
    const int64_t grain = std::max<int64_t>(1, 16384 / v_size);
    at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) {
      // scratch: e, plus (for half and bfloat16) the row and its gradient in float
      std::vector<T> scratch(static_cast<size_t>(v_size) * (convert ? 3 : 1));
      T* e = scratch.data();
      for (int64_t i = begin; i < end; ++i) {
        const int64_t action = a_ptr[i];
        if (action == ignore_index) {
          if (g_ptr) std::fill(g_ptr + i * v_size, g_ptr + (i + 1) * v_size, scalar_t(0));
          continue;
        }
        if constexpr (convert) {
          T* x = e + v_size;
          T* out = g_ptr ? e + 2 * v_size : nullptr;
          at::vec::convert(x_ptr + i * v_size, x, v_size);
          losses[i] = policy_row<T>(x, out, e, v_size, action, adv[i], beta, scale);
          if (out) at::vec::convert(out, g_ptr + i * v_size, v_size);
        } else {
          T* out = g_ptr ? reinterpret_cast<T*>(g_ptr) + i * v_size : nullptr;
          losses[i] = policy_row<T>(reinterpret_cast<const T*>(x_ptr) + i * v_size, out, e, v_size, action, adv[i],
                                    beta, scale);
        }
      }
    });
  });
  auto loss = row_losses.sum();  // rows are independent; one deterministic reduction at the end
  return mean ? loss.div_(std::max<int64_t>(valid, 1)) : loss;
}

std::tuple<at::Tensor, at::Tensor> policy_loss_cpu(const at::Tensor& logits_in, const at::Tensor& actions,
                                                   const at::Tensor& advantages, double entropy_coef,
                                                   int64_t ignore_index, c10::string_view reduction, bool with_grad) {
  check_policy_inputs(logits_in, actions, advantages);
  const bool mean = parse_mean_reduction(reduction);
  const auto logits = logits_in.contiguous();
  at::Tensor grad = with_grad ? at::empty_like(logits) : at::Tensor();
  auto loss = policy_loss_impl(logits, actions, advantages, entropy_coef, ignore_index, mean, grad);
  return {loss, with_grad ? grad : at::empty({0}, logits.options())};
}

at::Tensor policy_loss_inplace_cpu(at::Tensor& logits, const at::Tensor& actions, const at::Tensor& advantages,
                                   double entropy_coef, int64_t ignore_index, c10::string_view reduction) {
  check_policy_inputs(logits, actions, advantages);
  TORCH_CHECK(logits.is_contiguous(), "the in-place policy_gradient_loss needs contiguous logits");
  const bool mean = parse_mean_reduction(reduction);
  return policy_loss_impl(logits, actions, advantages, entropy_coef, ignore_index, mean, logits);
}

}  // namespace

TORCH_LIBRARY_IMPL(rlgan, CPU, m) {
  m.impl("reward_weighted_gan_loss", &gan_loss_cpu);
  m.impl("policy_gradient_loss", &policy_loss_cpu);
  m.impl("policy_gradient_loss_", &policy_loss_inplace_cpu);
}

}  // namespace rlgan
