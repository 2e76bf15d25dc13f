// CPU kernels of the rlgan:: losses: rows in parallel (at::parallel_for), vectorised with
// at::vec::Vectorized for the instruction set this file is compiled for.  The derivation and the
// numerics are in docs/kernels.md.  pip install builds it once per instruction set, each a Python
// module of its own (RLGAN_CPU_MODULE names it; rlgan_core/build.py), so that a wheel runs on any
// CPU and the extension imports the fastest build the CPU runs; the build on first use links it
// into one library with the schemas.
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

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <map>
#include <string>
#include <mutex>
#include <type_traits>
#include <utility>
#include <vector>
#ifdef __linux__
#include <sys/mman.h>
#endif

#include "../checks.h"

namespace rlgan {
namespace {

// ---------------------------------------------------------------------------------------------
// Shared by both losses: exp of non-positive arguments (both take exps of x - max), lane sums.

// Below exp_floor<T>, exp(x) is zero (float) or x is -inf (double): x - max is clamped to it, so
// that exp of a -inf logit is exactly 0 and 0 * (x - max) is 0, not NaN.
template <typename T>
constexpr T exp_floor() {
  return std::is_same_v<T, float> ? T(-88) : std::numeric_limits<T>::lowest();
}

// exp(x) for x in [-88, 0], the only range a softmax needs once the maximum is subtracted:
// 2^n * p(r) with n = round(x / ln 2), r = x - n ln 2 and p a degree-5 minimax polynomial.
// Relative error: below 2.5e-7 for x > -20, 4.5e-7 down to -88 (PyTorch's exp_u20: 20 ulp,
// about 1.2e-6).  The range lets it skip exp_u20's overflow and underflow handling:
// round(x / ln 2) + 127 falls in the low bits of x / ln 2 + (1.5 * 2^23 + 127), and shifting those
// bits up by 23 gives 2^n, which is exactly 0 for n = -127 (x below about -87.7).
#if defined(CPU_CAPABILITY_AVX2) || defined(CPU_CAPABILITY_AVX512)
#if defined(CPU_CAPABILITY_AVX512)
using Packed = __m512;
#define RLGAN_PS(op) _mm512_##op##_ps
#define RLGAN_SHIFT_EXPONENT(t) _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_castps_si512(t), 23))
#else
using Packed = __m256;
#define RLGAN_PS(op) _mm256_##op##_ps
#define RLGAN_SHIFT_EXPONENT(t) _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(t), 23))
#endif
inline at::vec::Vectorized<float> exp_nonpositive(const at::vec::Vectorized<float>& x_vec) {
  const Packed x = x_vec;
  const Packed magic = RLGAN_PS(set1)(12582912.0f + 127.0f);
  const Packed t = RLGAN_PS(fmadd)(x, RLGAN_PS(set1)(1.44269504088896341f), magic);
  const Packed n = RLGAN_PS(sub)(t, magic);
  const Packed r = RLGAN_PS(fnmadd)(n, RLGAN_PS(set1)(0.693147180559945f), x);
  Packed p = RLGAN_PS(fmadd)(RLGAN_PS(set1)(0.008298712782561779f), r, RLGAN_PS(set1)(0.041915446519851685f));
  p = RLGAN_PS(fmadd)(p, r, RLGAN_PS(set1)(0.1666755974292755f));
  p = RLGAN_PS(fmadd)(p, r, RLGAN_PS(set1)(0.49998894333839417f));
  p = RLGAN_PS(fmadd)(p, r, RLGAN_PS(set1)(0.9999997019767761f));
  p = RLGAN_PS(fmadd)(p, r, RLGAN_PS(set1)(1.0000001192092896f));
  return RLGAN_PS(mul)(p, RLGAN_SHIFT_EXPONENT(t));
}
#undef RLGAN_PS
#undef RLGAN_SHIFT_EXPONENT
#else
inline at::vec::Vectorized<float> exp_nonpositive(const at::vec::Vectorized<float>& x) { return x.exp(); }
#endif
inline at::vec::Vectorized<double> exp_nonpositive(const at::vec::Vectorized<double>& x) { return x.exp(); }

// The sum and the maximum of a vector's lanes.
template <typename T>
inline T vec_sum(const at::vec::Vectorized<T>& v) {
  return at::vec::vec_reduce_all<T>([](auto& a, auto& b) { return a + b; }, v);
}

template <typename T>
inline T vec_max(const at::vec::Vectorized<T>& v) {
  return at::vec::vec_reduce_all<T>([](auto& a, auto& b) { return at::vec::maximum(a, b); }, v);
}

// ---------------------------------------------------------------------------------------------
// reward_weighted_gan_loss, vectorised in T, the accumulation type (float for float, half and
// bfloat16 inputs; double for double).  Two exps (exp_nonpositive) and a log1p per sample.

// c_i = N softmax(temperature * A)_i from the scores r_i, written over r.  Scores that are not
// finite make the weights NaN (the Python wrapper rejects such rewards before the kernel runs).
// Passes over r with at::vec's map and reductions, which handle the partial last vector.
template <typename T>
void sample_weights(T* r, int64_t n, Baseline baseline, double temperature, double eps) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t W = Vec::size();
  const auto add = [](Vec& a, Vec& b) { return a + b; };
  const T sum = at::vec::reduce_all<T>(add, r, n);
  if (temperature == 0.0) {  // c = 1: the plain non-saturating loss
    std::fill(r, r + n, T(1));
    return;
  }
  const T mean = sum / n;
  const T shift = baseline == Baseline::None ? T(0) : mean;
  T scale = 1;
  if (baseline == Baseline::Whiten) {
    const Vec v_mean(mean);
    Vec squares(0);
    int64_t i = 0;
    for (; i + W <= n; i += W) {
      const Vec centred = Vec::loadu(r + i) - v_mean;
      squares = at::vec::fmadd(centred, centred, squares);
    }
    T total = vec_sum(squares);
    for (; i < n; ++i) total += (r[i] - mean) * (r[i] - mean);
    scale = static_cast<T>(1.0 / (std::sqrt(static_cast<double>(total) / n) + eps));
  }
  // exponents temperature * A = slope * (r - shift), then their softmax around the largest
  const Vec v_slope(static_cast<T>(temperature) * scale), v_shift(shift), floor(exp_floor<T>());
  at::vec::map([&](Vec v) { return v_slope * (v - v_shift); }, r, r, n);
  const Vec v_top(at::vec::reduce_all<T>([](Vec& a, Vec& b) { return at::vec::maximum(a, b); }, r, n));
  at::vec::map([&](Vec v) { return exp_nonpositive(at::vec::clamp_min(v - v_top, floor)); }, r, r, n);
  const Vec v_factor(n / at::vec::reduce_all<T>(add, r, n));
  at::vec::map([&](Vec v) { return v * v_factor; }, r, r, n);
}

// sum_i c_i softplus(-x_i), and grad_i = -(c_i/N) sigmoid(-x_i), with u = exp(-|x|):
// softplus(-x) = max(-x, 0) + log1p(u); sigmoid(-x) = u / (1 + u) for x >= 0, 1 / (1 + u) else.
// grad may be null (loss only).
template <typename T>
T weighted_softplus(const T* x, const T* c, T* grad, int64_t begin, int64_t end, int64_t n) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t W = Vec::size();
  const Vec zero(0), one(1), minus_inv_n(T(-1) / n), floor(exp_floor<T>());
  Vec total(0);
  int64_t i = begin;
  for (; i + W <= end; i += W) {
    const Vec xv = Vec::loadu(x + i), cv = Vec::loadu(c + i);
    const Vec u = exp_nonpositive(at::vec::clamp_min(zero - xv.abs(), floor));
    total = at::vec::fmadd(cv, at::vec::clamp_min(zero - xv, zero) + u.log1p(), total);
    if (grad) {
      const Vec sigmoid = Vec::blendv(one, u, xv >= zero) / (one + u);
      (cv * minus_inv_n * sigmoid).store(grad + i);
    }
  }
  T loss = vec_sum(total);
  for (; i < end; ++i) {
    const T u = std::exp(-std::abs(x[i]));
    loss += c[i] * (std::max(-x[i], T(0)) + std::log1p(u));
    if (grad) grad[i] = -(c[i] / n) * (x[i] >= 0 ? u : T(1)) / (1 + u);
  }
  return loss;
}

std::tuple<at::Tensor, at::Tensor> gan_loss_cpu(const at::Tensor& d_fake_in, const at::Tensor& rewards_in,
                                                const at::Tensor& weights_in, c10::string_view baseline_name,
                                                double temperature, double eps, bool with_grad) {
  check_gan_inputs(d_fake_in, rewards_in, weights_in);
  const Baseline baseline = parse_baseline(baseline_name);
  const auto acc_type = loss_dtype(d_fake_in);
  const auto d_fake = d_fake_in.contiguous();
  const auto rewards = rewards_in.to(acc_type).contiguous();
  const auto weights = weights_in.to(acc_type).contiguous();
  const int64_t n = d_fake.size(0), k = rewards.size(1);
  auto loss = at::empty({}, d_fake.options().dtype(acc_type));
  auto grad = with_grad ? at::empty_like(d_fake) : at::empty({0}, d_fake.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, d_fake.scalar_type(), "gan_loss_cpu", [&] {
    using T = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    constexpr bool convert = !std::is_same_v<scalar_t, T>;
    // scratch: c, plus (for half and bfloat16) d_fake and its gradient in T
    std::vector<T> scratch(static_cast<size_t>(n) * (convert ? 3 : 1));
    T* c = scratch.data();
    const T* r = rewards.const_data_ptr<T>();
    const T* w = weights.const_data_ptr<T>();
    for (int64_t i = 0; i < n; ++i) {  // the scores r = rewards @ reward_weights
      T score = 0;
      for (int64_t j = 0; j < k; ++j) score += r[i * k + j] * w[j];
      c[i] = score;
    }
    sample_weights(c, n, baseline, temperature, eps);
    const T* x = reinterpret_cast<const T*>(d_fake.const_data_ptr<scalar_t>());
    T* g = with_grad ? reinterpret_cast<T*>(grad.mutable_data_ptr<scalar_t>()) : nullptr;
    if constexpr (convert) {
      at::vec::convert(d_fake.const_data_ptr<scalar_t>(), c + n, n);
      x = c + n;
      g = with_grad ? c + 2 * n : nullptr;
    }
    // Fixed-size chunks in parallel, their sums added in chunk order: the loss does not depend
    // on the number of threads.
    constexpr int64_t kChunk = 2048;
    std::vector<T> partial((n + kChunk - 1) / kChunk);
    at::parallel_for(0, static_cast<int64_t>(partial.size()), 1, [&](int64_t first, int64_t last) {
      for (int64_t chunk = first; chunk < last; ++chunk)
        partial[chunk] = weighted_softplus(x, c, g, chunk * kChunk, std::min(n, (chunk + 1) * kChunk), n);
    });
    if constexpr (convert) {
      if (g) at::vec::convert(g, grad.mutable_data_ptr<scalar_t>(), n);
    }
    T total = 0;
    for (const T chunk_sum : partial) total += chunk_sum;
    total /= n;
    *loss.mutable_data_ptr<T>() = total;
  });
  return {loss, grad};
}

// ---------------------------------------------------------------------------------------------
// policy_gradient_loss: per row, one pass for the maximum, one that stores e = exp(x - max) in
// a row-sized scratch buffer while summing e and e (x - max), one that writes the gradient.
// The row stays in cache between passes, so memory sees one read of x and one write of the
// gradient, and each element costs one exp.  T is the arithmetic type: float (for float, half,
// bfloat16 inputs) or double.

template <typename T>
inline T row_max(const T* x, int64_t v_size) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t W = Vec::size();
  // Plain max instructions, two independent chains (a NaN may be dropped here; it still reaches
  // the sum of exps, and so the loss).
  Vec best0(-std::numeric_limits<T>::infinity()), best1 = best0;
  int64_t v = 0;
  for (; v + 2 * W <= v_size; v += 2 * W) {
    best0 = at::vec::clamp_min(Vec::loadu(x + v), best0);
    best1 = at::vec::clamp_min(Vec::loadu(x + v + W), best1);
  }
  for (; v + W <= v_size; v += W) best0 = at::vec::clamp_min(Vec::loadu(x + v), best0);
  T m = vec_max(at::vec::maximum(best0, best1));
  for (; v < v_size; ++v) m = std::max(m, x[v]);
  return m;
}

// The exp pass over one row: stores e = exp(x - m) and returns s = sum e and t = sum e (x - m)
// (t only when kEntropy).  While it computes, the next row (next_row, next_row_bytes) is
// prefetched, so that memory streams in the next row instead of waiting for the next max pass.
template <typename T, bool kEntropy>
inline std::pair<T, T> row_exp_sums(const T* x, T* e, int64_t v_size, T m, const char* next_row,
                                    int64_t next_row_bytes) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t W = Vec::size();
  constexpr int64_t kLine = 64;
  constexpr int64_t lines_per_step = std::max<int64_t>(1, 2 * W * sizeof(T) / kLine);
  const char* ahead_end = next_row + next_row_bytes;
  const Vec vm(m), floor(exp_floor<T>());
  // Two vectors per iteration for instruction-level parallelism; one accumulator each for s and
  // t (an iteration is long next to an add's latency, and spare registers avoid spills).
  Vec vs(0), vt(0);
  int64_t v = 0;
  for (; v + 2 * W <= v_size; v += 2 * W) {
    for (int64_t line = 0; line < lines_per_step && next_row < ahead_end; ++line, next_row += kLine)
      __builtin_prefetch(next_row);
    const Vec shifted0 = at::vec::clamp_min(Vec::loadu(x + v) - vm, floor);
    const Vec shifted1 = at::vec::clamp_min(Vec::loadu(x + v + W) - vm, floor);
    const Vec ex0 = exp_nonpositive(shifted0), ex1 = exp_nonpositive(shifted1);
    ex0.store(e + v);
    ex1.store(e + v + W);
    vs = vs + (ex0 + ex1);
    if constexpr (kEntropy) vt = at::vec::fmadd(ex0, shifted0, at::vec::fmadd(ex1, shifted1, vt));
  }
  for (; v + W <= v_size; v += W) {
    const Vec shifted = at::vec::clamp_min(Vec::loadu(x + v) - vm, floor);
    const Vec ex = exp_nonpositive(shifted);
    ex.store(e + v);
    vs = vs + ex;
    if constexpr (kEntropy) vt = at::vec::fmadd(ex, shifted, vt);
  }
  T s = vec_sum(vs), t = vec_sum(vt);
  for (; v < v_size; ++v) {
    const T shifted = std::max(x[v] - m, exp_floor<T>());
    e[v] = std::exp(shifted);
    s += e[v];
    t += e[v] * shifted;
  }
  return {s, t};
}

// Stores of a gradient that no pass reads again.  Streamed (kStream), they bypass the caches, so
// memory does not first read each line it is about to overwrite; `to` must then be aligned to
// the vector's size.  stream_fence() orders streamed stores before later ordinary ones.
template <bool kStream, typename T>
inline void store_gradient(T* to, const at::vec::Vectorized<T>& value) {
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
  if constexpr (kStream) {
#if defined(CPU_CAPABILITY_AVX512)
    if constexpr (std::is_same_v<T, float>) _mm512_stream_ps(to, value); else _mm512_stream_pd(to, value);
#else
    if constexpr (std::is_same_v<T, float>) _mm256_stream_ps(to, value); else _mm256_stream_pd(to, value);
#endif
    return;
  }
#endif
  value.store(to);
}

inline void stream_fence() {
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
  _mm_sfence();
#endif
}

// The gradient pass: grad_v = e_v (slope (x_v - m) + intercept), or e_v intercept without entropy.
template <typename T, bool kEntropy, bool kStream>
inline void write_gradient(const T* x, T* out, const T* e, int64_t v_size, T m, T slope, T intercept) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t W = Vec::size();
  const auto one = [&](int64_t v) {
    return kEntropy ? e[v] * (std::max(x[v] - m, exp_floor<T>()) * slope + intercept) : e[v] * intercept;
  };
  int64_t v = 0;
  if constexpr (kStream) {
    for (; v < v_size && reinterpret_cast<uintptr_t>(out + v) % sizeof(Vec) != 0; ++v) out[v] = one(v);
  }
  const Vec vm(m), floor(exp_floor<T>()), v_slope(slope), v_intercept(intercept);
  for (; v + W <= v_size; v += W) {
    if constexpr (kEntropy) {
      const Vec shifted = at::vec::clamp_min(Vec::loadu(x + v) - vm, floor);
      store_gradient<kStream>(out + v, Vec::loadu(e + v) * at::vec::fmadd(shifted, v_slope, v_intercept));
    } else {
      store_gradient<kStream>(out + v, Vec::loadu(e + v) * v_intercept);
    }
  }
  for (; v < v_size; ++v) out[v] = one(v);
  if constexpr (kStream) stream_fence();
}

// Gradient for one row into out (which may be x itself; streamed when `stream`); returns the
// row's loss term.
template <typename T>
inline T policy_row(const T* x, T* out, T* e, int64_t v_size, int64_t action, T advantage, T entropy_coef,
                    T scale, const char* next_row, int64_t next_row_bytes, bool stream) {
  const bool with_entropy = entropy_coef != T(0);
  const T m = row_max(x, v_size);
  const auto [s, t] = with_entropy ? row_exp_sums<T, true>(x, e, v_size, m, next_row, next_row_bytes)
                                   : row_exp_sums<T, false>(x, e, v_size, m, next_row, next_row_bytes);
  const T log_s = std::log(s);
  const T entropy = with_entropy ? log_s - t / s : T(0);
  const T log_p_action = std::max(x[action] - m, std::numeric_limits<T>::lowest()) - log_s;
  const T loss = -advantage * log_p_action - entropy_coef * entropy;
  if (out == nullptr) return loss;

  // grad_v = scale [A p_v + beta p_v (log p_v + H)] - scale A [v == a], with p_v = e_v / s and
  // log p_v + H = (x_v - m) + (H - log s):  grad_v = e_v (slope (x_v - m) + intercept).
  const T slope = scale * entropy_coef / s;
  const T intercept = scale * advantage / s + slope * (entropy - log_s);
  if (with_entropy && stream) write_gradient<T, true, true>(x, out, e, v_size, m, slope, intercept);
  else if (with_entropy) write_gradient<T, true, false>(x, out, e, v_size, m, slope, intercept);
  else if (stream) write_gradient<T, false, true>(x, out, e, v_size, m, slope, intercept);
  else write_gradient<T, false, false>(x, out, e, v_size, m, slope, intercept);
  out[action] -= scale * advantage;
  return loss;
}

// Count the rows whose action is not ignore_index.
template <typename index_t>
int64_t count_valid(const at::Tensor& actions, int64_t ignore_index) {
  const index_t* a = actions.const_data_ptr<index_t>();
  int64_t valid = 0;
  for (int64_t i = 0; i < actions.size(0); ++i) valid += a[i] != ignore_index;
  return valid;
}

// Runs the kernel over all rows. grad may be undefined (loss only) or alias logits (in place).
at::Tensor policy_loss_impl(const at::Tensor& logits, const at::Tensor& actions_in, const at::Tensor& advantages_in,
                            double entropy_coef, int64_t ignore_index, bool mean, at::Tensor grad) {
  const int64_t n = logits.size(0), v_size = logits.size(1);
  const auto actions = actions_in.to(at::kLong).contiguous();
  const int64_t valid = count_valid<int64_t>(actions, ignore_index);
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
    // a new gradient is streamed past the caches; one written over the logits is already cached
    const bool stream = g_ptr != nullptr && static_cast<const void*>(g_ptr) != static_cast<const void*>(x_ptr);
    T* losses = row_losses.mutable_data_ptr<T>();
    const int64_t grain = std::max<int64_t>(1, 16384 / v_size);
    at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) {
      // scratch: e, plus (for half and bfloat16) the row and its gradient in float
      std::vector<T> scratch(static_cast<size_t>(v_size) * (convert ? 3 : 1));
      T* e = scratch.data();
      for (int64_t i = begin; i < end; ++i) {
        const int64_t action = a_ptr[i];
        if (action == ignore_index || action < 0 || action >= v_size) {
          // ignored: loss 0, gradient 0; an action outside [0, V) is never used as an index: the
          // row's loss and gradient become NaN (the Python wrapper raises before it gets here)
          const bool ignored = action == ignore_index;
          losses[i] = ignored ? T(0) : std::numeric_limits<T>::quiet_NaN();
          const scalar_t fill = ignored ? scalar_t(0) : scalar_t(std::numeric_limits<float>::quiet_NaN());
          if (g_ptr) std::fill(g_ptr + i * v_size, g_ptr + (i + 1) * v_size, fill);
          continue;
        }
        const char* next_row = reinterpret_cast<const char*>(x_ptr + (i + 1) * v_size);
        const int64_t next_row_bytes = i + 1 < end ? v_size * static_cast<int64_t>(sizeof(scalar_t)) : 0;
        if constexpr (convert) {
          T* x = e + v_size;
          T* out = g_ptr ? e + 2 * v_size : nullptr;
          at::vec::convert(x_ptr + i * v_size, x, v_size);
          losses[i] = policy_row<T>(x, out, e, v_size, action, adv[i], beta, scale, next_row, next_row_bytes, false);
          if (out) at::vec::convert(out, g_ptr + i * v_size, v_size);
        } else {
          T* out = g_ptr ? reinterpret_cast<T*>(g_ptr) + i * v_size : nullptr;
          losses[i] = policy_row<T>(reinterpret_cast<const T*>(x_ptr) + i * v_size, out, e, v_size, action, adv[i],
                                    beta, scale, next_row, next_row_bytes, stream);
        }
      }
    });
  });
  // Rows are independent; one deterministic reduction at the end, in double: rows of large logits
  // have losses of 1e4 and more that mostly cancel.
  auto loss = row_losses.sum(at::kDouble);
  if (mean) loss.div_(std::max<int64_t>(valid, 1));
  return loss.to(acc_type);
}

// ---------------------------------------------------------------------------------------------
// Gradient memory.  A fresh [N, V] gradient costs more than the loss itself: the allocator hands
// large blocks back to the operating system on free, so every call page-faults its gradient in
// again (about 125 ms for 500 MB, against 25 ms for one read and one write of the logits).  So
// large gradients come from blocks this extension keeps: a tensor's storage returns its block here
// when the last reference to it dies, and the next call of that size takes it back, already mapped.
// A gradient a caller keeps is never handed out again, since its block only returns when nothing
// refers to it.  At most kIdleBlocks blocks wait idle; blocks are 2 MiB aligned and advised as
// huge pages, so even a first touch faults 512 times less often.
class GradientBlocks {
 public:
  static constexpr int64_t kMinBytes = int64_t(1) << 22;  // below 4 MiB the allocator's own cost is small
  static constexpr size_t kIdleBlocks = 2;

  static at::Tensor empty_like(const at::Tensor& logits) {
    const int64_t bytes = logits.numel() * logits.element_size();
    if (bytes < kMinBytes) return at::empty_like(logits);
    void* block = instance().take(bytes);
    return at::from_blob(
        block, logits.sizes(), [bytes](void* data) { instance().give_back(data, bytes); }, logits.options());
  }

 private:
  static GradientBlocks& instance() {
    static auto* blocks = new GradientBlocks();  // never destroyed: tensors may die after main returns
    return *blocks;
  }

  static constexpr size_t kAlignment = size_t(1) << 21;

  void* take(int64_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto found = idle_.find(bytes);
      if (found != idle_.end()) {
        void* block = found->second;
        idle_.erase(found);
        return block;
      }
    }
    void* block = nullptr;
    const size_t rounded = (static_cast<size_t>(bytes) + kAlignment - 1) / kAlignment * kAlignment;
    TORCH_CHECK(posix_memalign(&block, kAlignment, rounded) == 0, "out of memory allocating a ", bytes,
                "-byte gradient");
#ifdef MADV_HUGEPAGE
    madvise(block, rounded, MADV_HUGEPAGE);  // advice only: without huge pages it still works
#endif
    return block;
  }

  void give_back(void* block, int64_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    idle_.emplace(bytes, block);
    while (idle_.size() > kIdleBlocks) {  // drop the smallest idle blocks first
      std::free(idle_.begin()->second);
      idle_.erase(idle_.begin());
    }
  }

  std::mutex mutex_;
  std::multimap<int64_t, void*> idle_;
};

std::tuple<at::Tensor, at::Tensor> policy_loss_cpu(const at::Tensor& logits_in, const at::Tensor& actions,
                                                   const at::Tensor& advantages, double entropy_coef,
                                                   int64_t ignore_index, c10::string_view reduction, bool with_grad) {
  check_policy_inputs(logits_in, actions, advantages);
  const bool mean = parse_mean_reduction(reduction);
  const auto logits = logits_in.contiguous();
  at::Tensor grad = with_grad ? GradientBlocks::empty_like(logits) : at::Tensor();
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

// The instruction set of these kernels, for rlgan_core.extension and `rlgan doctor`.
std::string cpu_kernels() {
#if defined(CPU_CAPABILITY_AVX512)
  return "avx512";
#elif defined(CPU_CAPABILITY_AVX2)
  return "avx2";
#else
  return "default";
#endif
}

TORCH_LIBRARY_FRAGMENT(rlgan, m) { m.def("cpu_kernels() -> str", &cpu_kernels); }

TORCH_LIBRARY_IMPL(rlgan, CPU, m) {
  m.impl("reward_weighted_gan_loss", &gan_loss_cpu);
  m.impl("policy_gradient_loss", &policy_loss_cpu);
  m.impl("reward_weighted_gan_loss_eager", &gan_loss_cpu);
  m.impl("policy_gradient_loss_eager", &policy_loss_cpu);
  m.impl("policy_gradient_loss_", &policy_loss_inplace_cpu);
}

}  // namespace rlgan

#ifdef RLGAN_CPU_MODULE
// Importing rlgan_core._cpu_<instruction set> runs the static registrations above; it has no functions.
#include <Python.h>
#define RLGAN_CONCAT_(a, b) a##b
#define RLGAN_CONCAT(a, b) RLGAN_CONCAT_(a, b)
#define RLGAN_STRINGIFY_(x) #x
#define RLGAN_STRINGIFY(x) RLGAN_STRINGIFY_(x)
extern "C" PyObject* RLGAN_CONCAT(PyInit_, RLGAN_CPU_MODULE)(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, RLGAN_STRINGIFY(RLGAN_CPU_MODULE), nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
#endif
