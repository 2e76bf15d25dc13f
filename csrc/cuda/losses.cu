// CUDA kernels of the rlgan:: losses.  The derivation and the numerics are in docs/kernels.md.
//
// reward_weighted_gan_loss: one block does the whole batch in one launch (N is a batch size).
// policy_gradient_loss: one block per row.  Pass 1 reads the row with 16-byte loads and keeps
// per-thread online statistics (max, sum of e = exp(x - max), sum of e (x - max)), merged across
// the block; when the row fits, it is also kept in shared memory.  Pass 2 writes the gradient
// from the cached row (or re-reads it, usually from L2), so memory sees one read of the logits
// and one write of the gradient.
#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstdlib>
#include <limits>
#include <string>

#include "../checks.h"

namespace rlgan {
namespace {

__device__ __forceinline__ float fast_exp(float x) { return __expf(x); }
__device__ __forceinline__ double fast_exp(double x) { return exp(x); }
__device__ __forceinline__ float fast_log(float x) { return __logf(x); }
__device__ __forceinline__ double fast_log(double x) { return log(x); }

template <typename T>
__device__ __forceinline__ T lowest() { return -std::numeric_limits<T>::max(); }

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffff, v, offset);
  return v;
}

template <typename T>
__device__ __forceinline__ T warp_max(T v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = max(v, __shfl_xor_sync(0xffffffff, v, offset));
  return v;
}

// Reduce over the block; every thread gets the result.  scratch holds 32 values.
template <typename T, bool IS_MAX>
__device__ T block_reduce(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = IS_MAX ? warp_max(v) : warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T identity = IS_MAX ? -std::numeric_limits<T>::infinity() : T(0);
  v = lane < warps ? scratch[lane] : identity;
  return IS_MAX ? warp_max(v) : warp_sum(v);
}

// ---------------------------------------------------------------------------------------------
// reward_weighted_gan_loss

template <typename scalar_t, typename acc_t>
__global__ void gan_loss_kernel(const scalar_t* __restrict__ d, const acc_t* __restrict__ rewards,
                                const acc_t* __restrict__ weights, int64_t n, int64_t k, int baseline,
                                acc_t temperature, acc_t eps, acc_t* __restrict__ loss, scalar_t* __restrict__ grad) {
  __shared__ acc_t scratch[32];
  auto score = [&](int64_t i) {
    acc_t r = 0;
    for (int64_t j = 0; j < k; ++j) r += rewards[i * k + j] * weights[j];
    return r;
  };
  acc_t sum = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += score(i);
  const acc_t mean = block_reduce<acc_t, false>(sum, scratch) / n;
  acc_t shift = baseline == 0 ? acc_t(0) : mean, scale = 1;
  if (baseline == 2) {
    acc_t squares = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) squares += (score(i) - mean) * (score(i) - mean);
    scale = acc_t(1) / (sqrt(block_reduce<acc_t, false>(squares, scratch) / n) + eps);
  }
  acc_t top = -std::numeric_limits<acc_t>::infinity();
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) top = max(top, temperature * (score(i) - shift) * scale);
  top = block_reduce<acc_t, true>(top, scratch);
  acc_t normaliser = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    normaliser += exp(temperature * (score(i) - shift) * scale - top);
  normaliser = block_reduce<acc_t, false>(normaliser, scratch);
  acc_t total = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const acc_t c = n * exp(temperature * (score(i) - shift) * scale - top) / normaliser;
    const acc_t x = static_cast<acc_t>(d[i]);
    total += c * (max(-x, acc_t(0)) + log1p(exp(-abs(x))));  // c softplus(-x)
    if (grad != nullptr) grad[i] = static_cast<scalar_t>(-(c / n) / (acc_t(1) + exp(x)));  // -(c/N) sigmoid(-x)
  }
  total = block_reduce<acc_t, false>(total, scratch);
  if (threadIdx.x == 0) *loss = total / n;
}

std::tuple<at::Tensor, at::Tensor> gan_loss_cuda(const at::Tensor& d_fake_in, const at::Tensor& rewards_in,
                                                 const at::Tensor& weights_in, c10::string_view baseline_name,
                                                 double temperature, double eps, bool with_grad) {
  check_gan_inputs(d_fake_in, rewards_in, weights_in);
  const int baseline = static_cast<int>(parse_baseline(baseline_name));
  const c10::cuda::CUDAGuard guard(d_fake_in.device());
  const auto d_fake = d_fake_in.contiguous();
  const auto acc = loss_dtype(d_fake);
  const auto rewards = rewards_in.to(acc).contiguous();  // a no-op for float32 rewards
  const auto weights = weights_in.to(acc).contiguous();
  auto loss = at::empty({}, d_fake.options().dtype(acc));
  auto grad = with_grad ? at::empty_like(d_fake) : at::empty({0}, d_fake.options());
  const int64_t n = d_fake.size(0), k = rewards.size(1);
  const int threads = n >= 1024 ? 1024 : std::max<int>(32, ((n + 31) / 32) * 32);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, d_fake.scalar_type(), "gan_loss_cuda", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    gan_loss_kernel<scalar_t, acc_t><<<1, threads, 0, at::cuda::getCurrentCUDAStream()>>>(
        d_fake.const_data_ptr<scalar_t>(), rewards.const_data_ptr<acc_t>(), weights.const_data_ptr<acc_t>(), n, k,
        baseline, static_cast<acc_t>(temperature), static_cast<acc_t>(eps), loss.mutable_data_ptr<acc_t>(),
        with_grad ? grad.mutable_data_ptr<scalar_t>() : nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {loss, grad};
}

// ---------------------------------------------------------------------------------------------
// policy_gradient_loss

// Row statistics: m = max, s = sum e^(x - m), t = sum e^(x - m) (x - m).
template <typename T>
struct Stats {
  T m, s, t;
};

// Move statistics to a new (larger) maximum m.
template <typename T>
__device__ __forceinline__ Stats<T> rebase(Stats<T> a, T m) {
  if (a.s == T(0)) return {m, T(0), T(0)};
  const T shift = a.m - m, factor = fast_exp(shift);
  return {m, a.s * factor, factor * (a.t + shift * a.s)};
}

template <typename T>
__device__ __forceinline__ Stats<T> merge(Stats<T> a, Stats<T> b) {
  const T m = max(a.m, b.m);
  if (m == -std::numeric_limits<T>::infinity()) return a;
  a = rebase(a, m);
  b = rebase(b, m);
  return {m, a.s + b.s, a.t + b.t};
}

template <typename T>
__device__ Stats<T> block_merge(Stats<T> v, Stats<T>* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  for (int offset = 16; offset > 0; offset >>= 1) {
    Stats<T> other{__shfl_xor_sync(0xffffffff, v.m, offset), __shfl_xor_sync(0xffffffff, v.s, offset),
                   __shfl_xor_sync(0xffffffff, v.t, offset)};
    v = merge(v, other);
  }
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : Stats<T>{-std::numeric_limits<T>::infinity(), T(0), T(0)};
  for (int offset = 16; offset > 0; offset >>= 1) {
    Stats<T> other{__shfl_xor_sync(0xffffffff, v.m, offset), __shfl_xor_sync(0xffffffff, v.s, offset),
                   __shfl_xor_sync(0xffffffff, v.t, offset)};
    v = merge(v, other);
  }
  return v;
}

template <typename scalar_t, int VEC>
struct alignas(sizeof(scalar_t) * VEC) Pack {
  scalar_t v[VEC];
};

// The gradient of one pack of a row: scale [A (p_v - [v == a]) + beta p_v (log p_v + H)].
template <typename scalar_t, typename acc_t, int VEC>
__device__ __forceinline__ Pack<scalar_t, VEC> gradient_pack(const Pack<scalar_t, VEC>& p, int64_t first,
                                                             int64_t action, acc_t m, acc_t log_s, acc_t entropy,
                                                             acc_t a_term, acc_t b_term) {
  Pack<scalar_t, VEC> g;
#pragma unroll
  for (int j = 0; j < VEC; ++j) {
    // (x - m) first: exact near the maximum, where m + log s would round away log p's digits
    const acc_t log_p = max(static_cast<acc_t>(p.v[j]) - m, lowest<acc_t>()) - log_s;
    const acc_t prob = fast_exp(log_p);
    acc_t value = prob * a_term + (prob * b_term) * (log_p + entropy);  // prob = 0 gives 0
    if (first + j == action) value -= a_term;
    g.v[j] = static_cast<scalar_t>(value);
  }
  return g;
}

template <typename scalar_t, int VEC>
__device__ __forceinline__ void zero_row(Pack<scalar_t, VEC>* out, int64_t packs) {
  Pack<scalar_t, VEC> zero;
#pragma unroll
  for (int j = 0; j < VEC; ++j) zero.v[j] = scalar_t(0);
  for (int64_t i = threadIdx.x; i < packs; i += blockDim.x) out[i] = zero;
}

constexpr int UNROLL = 4;

template <typename scalar_t, typename acc_t, int VEC, bool CACHE>
__global__ void __launch_bounds__(1024) policy_loss_kernel(
    const scalar_t* __restrict__ logits, scalar_t* grad, const int64_t* __restrict__ actions,
    const acc_t* __restrict__ advantages, const int64_t* __restrict__ valid_rows, acc_t* __restrict__ row_loss,
    int64_t v_size, acc_t entropy_coef, int64_t ignore_index, bool mean) {
  using P = Pack<scalar_t, VEC>;
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  P* cache = reinterpret_cast<P*>(shared_bytes);
  __shared__ Stats<acc_t> scratch[32];

  const int64_t row = blockIdx.x;
  const int64_t action = actions[row];
  const int64_t packs = v_size / VEC;
  const P* x = reinterpret_cast<const P*>(logits + row * v_size);
  P* out = grad == nullptr ? nullptr : reinterpret_cast<P*>(grad + row * v_size);
  if (action == ignore_index) {
    if (out != nullptr) zero_row(out, packs);
    if (threadIdx.x == 0) row_loss[row] = 0;
    return;
  }

  // Read x[action] before pass 2 can overwrite it (in place).
  const scalar_t x_action = threadIdx.x == 0 ? logits[row * v_size + action] : scalar_t(0);

  // Pass 1: online statistics; UNROLL independent 16-byte loads in flight per thread.
  Stats<acc_t> st{-std::numeric_limits<acc_t>::infinity(), acc_t(0), acc_t(0)};
  auto consume = [&](const P& p) {
    acc_t top = st.m;
#pragma unroll
    for (int j = 0; j < VEC; ++j) top = max(top, static_cast<acc_t>(p.v[j]));
    if (top > st.m) st = rebase(st, top);
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      const acc_t shifted = max(static_cast<acc_t>(p.v[j]) - st.m, lowest<acc_t>());
      const acc_t e = fast_exp(shifted);
      st.s += e;
      st.t += e * shifted;
    }
  };
  const int64_t stride = blockDim.x;
  int64_t i = threadIdx.x;
  for (; i + (UNROLL - 1) * stride < packs; i += UNROLL * stride) {
    P p[UNROLL];
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) p[u] = x[i + u * stride];
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      if (CACHE) cache[i + u * stride] = p[u];
      consume(p[u]);
    }
  }
  for (; i < packs; i += stride) {
    const P p = x[i];
    if (CACHE) cache[i] = p;
    consume(p);
  }
  st = block_merge(st, scratch);
  const acc_t log_s = fast_log(st.s);
  const acc_t entropy = log_s - st.t / st.s;
  const acc_t advantage = advantages[row];
  if (threadIdx.x == 0) {
    const acc_t log_p_action = max(static_cast<acc_t>(x_action) - st.m, lowest<acc_t>()) - log_s;
    row_loss[row] = -advantage * log_p_action - entropy_coef * entropy;
  }
  if (out == nullptr) return;

  // Pass 2: grad_v = scale [A (p_v - [v == a]) + beta p_v (log p_v + H)].
  const int64_t valid = *valid_rows;
  const acc_t scale = mean ? acc_t(1) / static_cast<acc_t>(valid > 0 ? valid : 1) : acc_t(1);
  const acc_t a_term = scale * advantage, b_term = scale * entropy_coef;
  auto write = [&](int64_t index, const P& p) {
    out[index] = gradient_pack(p, index * VEC, action, st.m, log_s, entropy, a_term, b_term);
  };
  if (CACHE) __syncthreads();
  i = threadIdx.x;
  for (; i + (UNROLL - 1) * stride < packs; i += UNROLL * stride) {
    P p[UNROLL];
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) p[u] = CACHE ? cache[i + u * stride] : x[i + u * stride];
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) write(i + u * stride, p[u]);
  }
  for (; i < packs; i += stride) write(i, CACHE ? cache[i] : x[i]);
}

// Rows of up to 1024 x PPT packs (128 KiB) stay in registers between the two passes: the logits
// are read once and the gradient written once, with no shared memory and no re-read.
template <typename scalar_t, typename acc_t, int VEC, int PPT>
__global__ void __launch_bounds__(1024) policy_loss_resident_kernel(
    const scalar_t* __restrict__ logits, scalar_t* grad, const int64_t* __restrict__ actions,
    const acc_t* __restrict__ advantages, const int64_t* __restrict__ valid_rows, acc_t* __restrict__ row_loss,
    int64_t v_size, acc_t entropy_coef, int64_t ignore_index, bool mean) {
  using P = Pack<scalar_t, VEC>;
  __shared__ acc_t scratch[32];
  const int64_t row = blockIdx.x;
  const int64_t action = actions[row];
  const int64_t packs = v_size / VEC;
  const P* x = reinterpret_cast<const P*>(logits + row * v_size);
  P* out = grad == nullptr ? nullptr : reinterpret_cast<P*>(grad + row * v_size);
  if (action == ignore_index) {
    if (out != nullptr) zero_row(out, packs);
    if (threadIdx.x == 0) row_loss[row] = 0;
    return;
  }
  const scalar_t x_action = threadIdx.x == 0 ? logits[row * v_size + action] : scalar_t(0);
  P p[PPT];
#pragma unroll
  for (int u = 0; u < PPT; ++u) {
    const int64_t i = threadIdx.x + u * static_cast<int64_t>(blockDim.x);
    if (i < packs) p[u] = x[i];
  }
  // The block's maximum first, so that every exponential is taken once, relative to it.
  acc_t m = -std::numeric_limits<acc_t>::infinity();
#pragma unroll
  for (int u = 0; u < PPT; ++u)
    if (threadIdx.x + u * blockDim.x < packs)
#pragma unroll
      for (int j = 0; j < VEC; ++j) m = max(m, static_cast<acc_t>(p[u].v[j]));
  m = block_reduce<acc_t, true>(m, scratch);
  acc_t s = 0, t = 0;
#pragma unroll
  for (int u = 0; u < PPT; ++u)
    if (threadIdx.x + u * blockDim.x < packs)
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const acc_t shifted = max(static_cast<acc_t>(p[u].v[j]) - m, lowest<acc_t>());
        const acc_t e = fast_exp(shifted);
        s += e;
        t += e * shifted;
      }
  s = block_reduce<acc_t, false>(s, scratch);
  t = block_reduce<acc_t, false>(t, scratch);
  const acc_t log_s = fast_log(s);
  const acc_t entropy = log_s - t / s;
  const acc_t advantage = advantages[row];
  if (threadIdx.x == 0)
    row_loss[row] = -advantage * (max(static_cast<acc_t>(x_action) - m, lowest<acc_t>()) - log_s) -
                    entropy_coef * entropy;
  if (out == nullptr) return;
  const int64_t valid = *valid_rows;
  const acc_t scale = mean ? acc_t(1) / static_cast<acc_t>(valid > 0 ? valid : 1) : acc_t(1);
#pragma unroll
  for (int u = 0; u < PPT; ++u) {
    const int64_t i = threadIdx.x + u * static_cast<int64_t>(blockDim.x);
    if (i < packs) out[i] = gradient_pack(p[u], i * VEC, action, m, log_s, entropy, scale * advantage,
                                          scale * entropy_coef);
  }
}

// Rows too long for registers but within this budget are kept in shared memory between the two
// passes.  RLGAN_CUDA_ROW_CACHE_BYTES overrides it, and RLGAN_CUDA_REGISTER_ROWS=0 turns the
// register-resident kernel off (both for measurements: benchmarks/row_cache_sweep.py).
int64_t cache_budget_bytes() {
  static const int64_t budget = [] {
    const char* text = std::getenv("RLGAN_CUDA_ROW_CACHE_BYTES");
    return text ? std::atoll(text) : int64_t(64 * 1024);
  }();
  return budget;
}

bool register_rows_enabled() {
  static const bool enabled = [] {
    const char* text = std::getenv("RLGAN_CUDA_REGISTER_ROWS");
    return text == nullptr || std::string(text) != "0";
  }();
  return enabled;
}

template <typename scalar_t, typename acc_t, int VEC>
void launch_policy(const at::Tensor& logits, at::Tensor* grad, const at::Tensor& actions, const at::Tensor& adv,
                   const at::Tensor& valid, at::Tensor& row_loss, double entropy_coef, int64_t ignore_index,
                   bool mean) {
  const int64_t n = logits.size(0), v_size = logits.size(1);
  const int64_t packs = v_size / VEC;
  int threads = 128;
  while (threads < 1024 && threads * 8 < packs) threads *= 2;
  const int64_t row_bytes = v_size * static_cast<int64_t>(sizeof(scalar_t));
  const bool cache = grad != nullptr && row_bytes <= cache_budget_bytes();
  auto stream = at::cuda::getCurrentCUDAStream();
  auto args = [&](auto kernel, size_t shared, int threads) {
    if (shared > 48 * 1024)
      C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared)));
    kernel<<<n, threads, shared, stream>>>(
        logits.const_data_ptr<scalar_t>(), grad ? grad->mutable_data_ptr<scalar_t>() : nullptr,
        actions.const_data_ptr<int64_t>(), adv.const_data_ptr<acc_t>(), valid.const_data_ptr<int64_t>(),
        row_loss.mutable_data_ptr<acc_t>(), v_size, static_cast<acc_t>(entropy_coef), ignore_index, mean);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  };
  if (VEC > 1 && packs <= 1024 * 8 && register_rows_enabled()) {  // the whole row fits in the block's registers
    const int ppt = packs > 2048 ? 8 : packs > 512 ? 4 : packs > 128 ? 2 : 1;
    const int resident_threads = std::max<int>(32, static_cast<int>((packs + ppt - 1) / ppt + 31) / 32 * 32);
    switch (ppt) {
      case 8: return args(policy_loss_resident_kernel<scalar_t, acc_t, VEC, 8>, 0, resident_threads);
      case 4: return args(policy_loss_resident_kernel<scalar_t, acc_t, VEC, 4>, 0, resident_threads);
      case 2: return args(policy_loss_resident_kernel<scalar_t, acc_t, VEC, 2>, 0, resident_threads);
      default: return args(policy_loss_resident_kernel<scalar_t, acc_t, VEC, 1>, 0, resident_threads);
    }
  }
  if (cache)
    args(policy_loss_kernel<scalar_t, acc_t, VEC, true>, static_cast<size_t>(row_bytes), threads);
  else
    args(policy_loss_kernel<scalar_t, acc_t, VEC, false>, 0, threads);
}

at::Tensor policy_loss_impl(const at::Tensor& logits, const at::Tensor& actions_in, const at::Tensor& advantages_in,
                            double entropy_coef, int64_t ignore_index, bool mean, at::Tensor* grad) {
  const c10::cuda::CUDAGuard guard(logits.device());
  const int64_t n = logits.size(0), v_size = logits.size(1);
  const auto acc = loss_dtype(logits);
  const auto actions = actions_in.to(at::kLong).contiguous();
  const auto advantages = advantages_in.to(acc).contiguous();
  auto row_loss = at::empty({n}, logits.options().dtype(acc));
  const auto valid = actions.ne(ignore_index).sum();
  if (n == 0) return row_loss.sum();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "policy_loss_cuda", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    constexpr int VEC = 16 / sizeof(scalar_t);
    const bool aligned = v_size % VEC == 0 && reinterpret_cast<uintptr_t>(logits.const_data_ptr()) % 16 == 0 &&
                         (grad == nullptr || reinterpret_cast<uintptr_t>(grad->const_data_ptr()) % 16 == 0);
    if (aligned)
      launch_policy<scalar_t, acc_t, VEC>(logits, grad, actions, advantages, valid, row_loss, entropy_coef,
                                          ignore_index, mean);
    else
      launch_policy<scalar_t, acc_t, 1>(logits, grad, actions, advantages, valid, row_loss, entropy_coef,
                                        ignore_index, mean);
  });
  auto loss = row_loss.sum();
  return mean ? loss.div_(valid.clamp_min(1)) : loss;
}

std::tuple<at::Tensor, at::Tensor> policy_loss_cuda(const at::Tensor& logits_in, const at::Tensor& actions,
                                                    const at::Tensor& advantages, double entropy_coef,
                                                    int64_t ignore_index, c10::string_view reduction, bool with_grad) {
  check_policy_inputs(logits_in, actions, advantages);
  const bool mean = parse_mean_reduction(reduction);
  const auto logits = logits_in.contiguous();
  if (!with_grad)
    return {policy_loss_impl(logits, actions, advantages, entropy_coef, ignore_index, mean, nullptr),
            at::empty({0}, logits.options())};
  auto grad = at::empty_like(logits);
  auto loss = policy_loss_impl(logits, actions, advantages, entropy_coef, ignore_index, mean, &grad);
  return {loss, grad};
}

at::Tensor policy_loss_inplace_cuda(at::Tensor& logits, const at::Tensor& actions, const at::Tensor& advantages,
                                    double entropy_coef, int64_t ignore_index, c10::string_view reduction) {
  check_policy_inputs(logits, actions, advantages);
  TORCH_CHECK(logits.is_contiguous(), "the in-place policy_gradient_loss needs contiguous logits");
  const bool mean = parse_mean_reduction(reduction);
  return policy_loss_impl(logits, actions, advantages, entropy_coef, ignore_index, mean, &logits);
}

}  // namespace

TORCH_LIBRARY_IMPL(rlgan, CUDA, m) {
  m.impl("reward_weighted_gan_loss", &gan_loss_cuda);
  m.impl("policy_gradient_loss", &policy_loss_cuda);
  m.impl("policy_gradient_loss_", &policy_loss_inplace_cuda);
}

}  // namespace rlgan
