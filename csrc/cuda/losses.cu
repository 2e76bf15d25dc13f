// CUDA kernels of the rlgan:: losses.  The derivation and the numerics are in docs/kernels.md.
//
// reward_weighted_gan_loss: one block does the whole batch in one launch (N is a batch size).
// policy_gradient_loss: three launches and no host synchronisation: a one-block count of the
// valid rows, the row kernel (one block per row), and a one-block sum of the row losses.  Rows
// that fit are kept on chip between the statistics and the gradient (registers, then registers
// plus shared memory); longer rows keep per-thread online statistics (max, sum of
// e = exp(x - max), sum of e (x - max)), merged across the block, and are read again for the
// gradient, mostly from L2.  An action outside [0, V) that is not ignore_index is never used as
// an index: its row's loss and gradient become NaN (rlgan_core.ops then raises, see
// docs/kernels.md).
#include <cuda_pipeline.h>

#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
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
__device__ __forceinline__ void fill_row(Pack<scalar_t, VEC>* out, int64_t packs, float value) {
  Pack<scalar_t, VEC> filled;
#pragma unroll
  for (int j = 0; j < VEC; ++j) filled.v[j] = static_cast<scalar_t>(value);
  for (int64_t i = threadIdx.x; i < packs; i += blockDim.x) out[i] = filled;
}

// Rows with nothing to compute: an ignored row (loss 0, gradient 0) or a row whose action lies
// outside [0, V) (loss NaN, gradient NaN).  Returns true when the row was handled.
template <typename scalar_t, typename acc_t, int VEC>
__device__ __forceinline__ bool skip_row(int64_t action, int64_t ignore_index, int64_t v_size,
                                         Pack<scalar_t, VEC>* out, int64_t packs, acc_t* row_loss) {
  const bool ignored = action == ignore_index;
  if (!ignored && action >= 0 && action < v_size) return false;
  const float value = ignored ? 0.0f : __int_as_float(0x7fc00000);  // quiet NaN
  if (out != nullptr) fill_row(out, packs, value);
  if (threadIdx.x == 0) *row_loss = static_cast<acc_t>(value);
  return true;
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
  if (skip_row<scalar_t, acc_t, VEC>(action, ignore_index, v_size, out, packs, row_loss + row)) return;

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

// Rows of up to blockDim x PPT packs (128 KiB at 1024 threads and PPT = 8) stay in registers
// between the two passes; a row longer than that keeps its remaining packs in shared memory
// (copied there asynchronously while the register part loads).  Either way the logits are read
// once and the gradient written once.  Each thread only touches its own shared-memory packs, so
// the cache needs no barrier of its own.
template <typename scalar_t, typename acc_t, int VEC, int PPT>
__global__ void __launch_bounds__(1024) policy_loss_resident_kernel(
    const scalar_t* __restrict__ logits, scalar_t* grad, const int64_t* __restrict__ actions,
    const acc_t* __restrict__ advantages, const int64_t* __restrict__ valid_rows, acc_t* __restrict__ row_loss,
    int64_t v_size, acc_t entropy_coef, int64_t ignore_index, bool mean) {
  using P = Pack<scalar_t, VEC>;
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  P* cache = reinterpret_cast<P*>(shared_bytes);
  __shared__ acc_t scratch[32];
  const int64_t row = blockIdx.x;
  const int64_t action = actions[row];
  const int64_t packs = v_size / VEC;
  const P* x = reinterpret_cast<const P*>(logits + row * v_size);
  P* out = grad == nullptr ? nullptr : reinterpret_cast<P*>(grad + row * v_size);
  if (skip_row<scalar_t, acc_t, VEC>(action, ignore_index, v_size, out, packs, row_loss + row)) return;
  const int64_t in_registers = static_cast<int64_t>(PPT) * blockDim.x;
  // the shared-memory part first: its copies run while the register part loads
  for (int64_t i = in_registers + threadIdx.x; i < packs; i += blockDim.x)
    __pipeline_memcpy_async(cache + (i - in_registers), x + i, sizeof(P));
  __pipeline_commit();
  const scalar_t x_action = threadIdx.x == 0 ? logits[row * v_size + action] : scalar_t(0);
  P p[PPT];
#pragma unroll
  for (int u = 0; u < PPT; ++u) {
    const int64_t i = threadIdx.x + u * static_cast<int64_t>(blockDim.x);
    if (i < packs) p[u] = x[i];
  }
  // The block's maximum first, so that every exponential is taken once, relative to it.
  acc_t m = -std::numeric_limits<acc_t>::infinity();
  auto pack_max = [&](const P& q) {
#pragma unroll
    for (int j = 0; j < VEC; ++j) m = max(m, static_cast<acc_t>(q.v[j]));
  };
#pragma unroll
  for (int u = 0; u < PPT; ++u)
    if (threadIdx.x + u * blockDim.x < packs) pack_max(p[u]);
  __pipeline_wait_prior(0);
  for (int64_t i = in_registers + threadIdx.x; i < packs; i += blockDim.x) pack_max(cache[i - in_registers]);
  m = block_reduce<acc_t, true>(m, scratch);
  acc_t s = 0, t = 0;
  auto pack_sums = [&](const P& q) {
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      const acc_t shifted = max(static_cast<acc_t>(q.v[j]) - m, lowest<acc_t>());
      const acc_t e = fast_exp(shifted);
      s += e;
      t += e * shifted;
    }
  };
#pragma unroll
  for (int u = 0; u < PPT; ++u)
    if (threadIdx.x + u * blockDim.x < packs) pack_sums(p[u]);
  for (int64_t i = in_registers + threadIdx.x; i < packs; i += blockDim.x) pack_sums(cache[i - in_registers]);
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
  const acc_t a_term = scale * advantage, b_term = scale * entropy_coef;
#pragma unroll
  for (int u = 0; u < PPT; ++u) {
    const int64_t i = threadIdx.x + u * static_cast<int64_t>(blockDim.x);
    if (i < packs) out[i] = gradient_pack(p[u], i * VEC, action, m, log_s, entropy, a_term, b_term);
  }
  for (int64_t i = in_registers + threadIdx.x; i < packs; i += blockDim.x)
    out[i] = gradient_pack(cache[i - in_registers], i * VEC, action, m, log_s, entropy, a_term, b_term);
}

// The number of rows whose action is not ignore_index, on the device (no host synchronisation).
__global__ void count_valid_kernel(const int64_t* __restrict__ actions, int64_t n, int64_t ignore_index,
                                   int64_t* __restrict__ valid) {
  __shared__ int64_t scratch[32];
  int64_t count = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) count += actions[i] != ignore_index;
  count = block_reduce<int64_t, false>(count, scratch);
  if (threadIdx.x == 0) *valid = count;
}

// loss = sum of the row losses, divided by max(valid, 1) for "mean".  Summed in double, in a fixed
// order (deterministic): rows of large logits have losses of 1e4 and more that mostly cancel.
template <typename acc_t>
__global__ void finish_loss_kernel(const acc_t* __restrict__ row_loss, int64_t n, const int64_t* __restrict__ valid,
                                   bool mean, acc_t* __restrict__ loss) {
  __shared__ double scratch[32];
  double total = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) total += row_loss[i];
  total = block_reduce<double, false>(total, scratch);
  if (threadIdx.x == 0)
    *loss = static_cast<acc_t>(mean ? total / static_cast<double>(*valid > 0 ? *valid : 1) : total);
}

// Rows too long for registers and shared memory but within this budget are kept in shared memory
// between the two passes.  RLGAN_CUDA_ROW_CACHE_BYTES overrides it, and RLGAN_CUDA_REGISTER_ROWS=0
// turns the resident kernel off (both for measurements: benchmarks/row_cache_sweep.py).
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
  if (VEC > 1 && register_rows_enabled()) {
    if (packs <= 1024 * 8) {  // the whole row fits in the block's registers
      const int ppt = packs > 2048 ? 8 : packs > 512 ? 4 : packs > 128 ? 2 : 1;
      const int resident_threads = std::max<int>(32, static_cast<int>((packs + ppt - 1) / ppt + 31) / 32 * 32);
      switch (ppt) {
        case 8: return args(policy_loss_resident_kernel<scalar_t, acc_t, VEC, 8>, 0, resident_threads);
        case 4: return args(policy_loss_resident_kernel<scalar_t, acc_t, VEC, 4>, 0, resident_threads);
        case 2: return args(policy_loss_resident_kernel<scalar_t, acc_t, VEC, 2>, 0, resident_threads);
        default: return args(policy_loss_resident_kernel<scalar_t, acc_t, VEC, 1>, 0, resident_threads);
      }
    }
    // Registers for 4 packs per thread (8 would spill for bfloat16 once the shared-memory loops are
    // in), shared memory for the rest, if the device allows it: on an H100 (227 KiB per block)
    // rows of up to about 290 KiB, such as bfloat16 V = 131072 or float32 V = 65536.
    const int64_t extra_bytes = (packs - 1024 * 4) * static_cast<int64_t>(sizeof(Pack<scalar_t, VEC>));
    const int64_t shared_limit = at::cuda::getCurrentDeviceProperties()->sharedMemPerBlockOptin;
    if (extra_bytes + 1024 <= shared_limit)
      return args(policy_loss_resident_kernel<scalar_t, acc_t, VEC, 4>, static_cast<size_t>(extra_bytes), 1024);
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
  auto loss = at::empty({}, logits.options().dtype(acc));
  auto valid = at::empty({}, actions.options());
  auto stream = at::cuda::getCurrentCUDAStream();
  count_valid_kernel<<<1, 1024, 0, stream>>>(actions.const_data_ptr<int64_t>(), n, ignore_index,
                                              valid.mutable_data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "policy_loss_cuda", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    constexpr int VEC = 16 / sizeof(scalar_t);
    const bool aligned = v_size % VEC == 0 && reinterpret_cast<uintptr_t>(logits.const_data_ptr()) % 16 == 0 &&
                         (grad == nullptr || reinterpret_cast<uintptr_t>(grad->const_data_ptr()) % 16 == 0);
    if (n > 0 && aligned)
      launch_policy<scalar_t, acc_t, VEC>(logits, grad, actions, advantages, valid, row_loss, entropy_coef,
                                          ignore_index, mean);
    else if (n > 0)
      launch_policy<scalar_t, acc_t, 1>(logits, grad, actions, advantages, valid, row_loss, entropy_coef,
                                        ignore_index, mean);
    finish_loss_kernel<acc_t><<<1, 1024, 0, stream>>>(row_loss.const_data_ptr<acc_t>(), n,
                                                       valid.const_data_ptr<int64_t>(), mean,
                                                       loss.mutable_data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return loss;
}

// ---------------------------------------------------------------------------------------------
// scale_gradient_: grad *= scale / previous (previous = 1 when absent), skipped on the device when
// the two are equal, so that the backward pass of a loss whose incoming gradient is 1 (the usual
// case) costs one tiny launch and no host synchronisation.

template <typename scalar_t, typename scale_t>
__global__ void scale_gradient_kernel(scalar_t* __restrict__ grad, int64_t numel, const scale_t* __restrict__ scale,
                                      const scale_t* __restrict__ previous) {
  const scale_t wanted = *scale, applied = previous == nullptr ? scale_t(1) : *previous;
  if (wanted == applied) return;
  const scale_t factor = wanted / applied;  // applied = 0 cannot be undone: NaN, loudly
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < numel;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    grad[i] = static_cast<scalar_t>(static_cast<scale_t>(grad[i]) * factor);
}

void scale_gradient_cuda(at::Tensor& grad, const at::Tensor& scale, const std::optional<at::Tensor>& previous) {
  TORCH_CHECK_VALUE(grad.is_contiguous() && scale.numel() == 1, "scale_gradient_: contiguous grad, one scale");
  TORCH_CHECK_VALUE(!previous.has_value() || (previous->numel() == 1 && previous->scalar_type() == scale.scalar_type()),
                    "scale_gradient_: previous must be a scalar of the scale's dtype");
  const c10::cuda::CUDAGuard guard(grad.device());
  const int64_t numel = grad.numel();
  if (numel == 0) return;
  const int blocks = static_cast<int>(std::min<int64_t>((numel + 255) / 256,
                                                        at::cuda::getCurrentDeviceProperties()->multiProcessorCount * 8));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "scale_gradient_cuda", [&] {
    using grad_t = scalar_t;
    AT_DISPATCH_FLOATING_TYPES(scale.scalar_type(), "scale_gradient_cuda_scale", [&] {
      scale_gradient_kernel<grad_t, scalar_t><<<blocks, 256, 0, at::cuda::getCurrentCUDAStream()>>>(
          grad.mutable_data_ptr<grad_t>(), numel, scale.const_data_ptr<scalar_t>(),
          previous.has_value() ? previous->const_data_ptr<scalar_t>() : nullptr);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
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
  m.impl("reward_weighted_gan_loss_eager", &gan_loss_cuda);
  m.impl("policy_gradient_loss_eager", &policy_loss_cuda);
  m.impl("policy_gradient_loss_", &policy_loss_inplace_cuda);
  m.impl("scale_gradient_", &scale_gradient_cuda);
}

}  // namespace rlgan
