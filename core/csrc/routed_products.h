// The sparse products of routed layers (DS-RNN), organised so that memory traffic and FLOPs both
// fall with the kept fraction (see routed_forward.cpp and routed_backward.cpp for the loops that call them).
//
// Every product reads the weights transposed, W^T (n, N): row j of W^T holds what channel j
// contributes to all N gate pre-activations, so a kept channel is one contiguous row. The N columns
// are cut into panels of kPanel vectors; within a panel every sample (or every channel) keeps its
// sums in registers while the panel's rows stream from the L2 cache (an I x kPanel panel of W^T is
// at most a few hundred KiB), so each weight is fetched from memory about once per step however
// many samples keep its channel, and only the kept channels' rows are touched at all:
//
// - gather_product:  out[b, :] = bias + sum_q vals[b, q] * W^T[idx[b, q], :]     (forward)
// - sampled_dots:    out[b, q] = dg[b, :] . W^T[idx[b, q], :]                   (backward, dh and dx)
// - channel_outer:   dW^T[j, :] = sum over the rows m that keep j of v[m] * dg[m, :]  (weight gradient)
//
// Written with GCC / Clang vector extensions (64-byte vectors: AVX-512 where the target has it,
// two AVX2 halves elsewhere). Tested through the fused backend's tests against the reference.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

namespace sparsernn {

template <typename T>
struct RoutedVec {
  static constexpr int kBytes = 64;
  static constexpr int L = kBytes / int(sizeof(T));  // lanes per vector
  static constexpr int kPanel = 8;                    // vectors per panel
  typedef T V __attribute__((vector_size(kBytes)));
  static inline V load(const T* p) { V v; std::memcpy(&v, p, sizeof(V)); return v; }
  static inline void store(T* p, V v) { std::memcpy(p, &v, sizeof(V)); }
  static inline T sum(V v) {
    T s = T(0);
    for (int l = 0; l < L; ++l) s += v[l];
    return s;
  }
};

// a[0:n] . b[0:n], with vector partial sums (no per-iteration masking or spills).
template <typename T>
inline T dot(const T* __restrict__ a, const T* __restrict__ b, int64_t n) {
  using R = RoutedVec<T>;
  using V = typename R::V;
  constexpr int L = R::L;
  V acc0 = V{}, acc1 = V{};
  int64_t i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    acc0 += R::load(a + i) * R::load(b + i);
    acc1 += R::load(a + i + L) * R::load(b + i + L);
  }
  for (; i + L <= n; i += L) acc0 += R::load(a + i) * R::load(b + i);
  T s = R::sum(acc0 + acc1);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

namespace detail {

// Columns [c0, c0 + NV * L) of gather_product.
template <typename T, int NV>
inline void gather_panel(const T* __restrict__ vals, const int32_t* __restrict__ idx, int64_t B, int64_t k,
                         const T* __restrict__ wt, int64_t N, const T* __restrict__ bias, T* __restrict__ out,
                         int64_t ldo, int64_t c0) {
  using R = RoutedVec<T>;
  using V = typename R::V;
  constexpr int L = R::L;
  for (int64_t b = 0; b < B; ++b) {
    V acc[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[v] = bias ? R::load(bias + c0 + v * L) : V{};
    const T* vb = vals + b * k;
    const int32_t* ib = idx + b * k;
    for (int64_t q = 0; q < k; ++q) {
      const T a = vb[q];
      const T* w = wt + int64_t(ib[q]) * N + c0;
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[v] += a * R::load(w + v * L);
    }
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) R::store(out + b * ldo + c0 + v * L, acc[v]);
  }
}

// Columns [c0, c0 + NV * L) of sampled_dots, added to the vector partial sums part (B * k vectors).
template <typename T, int NV>
inline void dots_panel(const T* __restrict__ dg, int64_t ldg, const int32_t* __restrict__ idx, int64_t B, int64_t k,
                       const T* __restrict__ wt, int64_t N, typename RoutedVec<T>::V* __restrict__ part, int64_t c0) {
  using R = RoutedVec<T>;
  using V = typename R::V;
  constexpr int L = R::L;
  for (int64_t b = 0; b < B; ++b) {
    V d[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) d[v] = R::load(dg + b * ldg + c0 + v * L);
    const int32_t* ib = idx + b * k;
    V* pb = part + b * k;
    for (int64_t q = 0; q < k; ++q) {
      const T* w = wt + int64_t(ib[q]) * N + c0;
      V s = d[0] * R::load(w);
#pragma GCC unroll 8
      for (int v = 1; v < NV; ++v) s += d[v] * R::load(w + v * L);
      pb[q] += s;
    }
  }
}

// Columns [c0, c0 + NV * L) of channel_outer.
template <typename T, int NV>
inline void outer_panel(const T* __restrict__ dg, int64_t N, const int64_t* __restrict__ start,
                        const int32_t* __restrict__ rows, const T* __restrict__ vals, int64_t n, T* __restrict__ dwt,
                        int64_t c0) {
  using R = RoutedVec<T>;
  using V = typename R::V;
  constexpr int L = R::L;
  for (int64_t j = 0; j < n; ++j) {
    V acc[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[v] = V{};
    for (int64_t e = start[j]; e < start[j + 1]; ++e) {
      const T a = vals[e];
      const T* d = dg + int64_t(rows[e]) * N + c0;
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[v] += a * R::load(d + v * L);
    }
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) R::store(dwt + j * N + c0 + v * L, acc[v]);
  }
}

}  // namespace detail

// out[b, :] (rows ldo apart) = bias (or 0) + sum_q vals[b, q] * wt[idx[b, q], :], for b < B, q < k;
// wt (n, N) row-major.
//
// A single sample (acting, streaming) streams each kept row whole instead (its output row stays in L1,
// and a whole row is one sequential read the hardware prefetcher follows; the panel order would jump
// between rows every few cache lines).
template <typename T>
void gather_product(const T* vals, const int32_t* idx, int64_t B, int64_t k, const T* wt, int64_t N, const T* bias,
                    T* out, int64_t ldo) {
  constexpr int L = RoutedVec<T>::L, P = RoutedVec<T>::kPanel;
  if (B == 1) {
    for (int64_t c = 0; c < N; ++c) out[c] = bias ? bias[c] : T(0);
    for (int64_t q = 0; q < k; ++q) {
      const T a = vals[q];
      const T* __restrict__ w = wt + int64_t(idx[q]) * N;
      T* __restrict__ o = out;
#pragma omp simd
      for (int64_t c = 0; c < N; ++c) o[c] += a * w[c];
    }
    return;
  }
  int64_t c0 = 0;
  for (; c0 + P * L <= N; c0 += P * L) detail::gather_panel<T, P>(vals, idx, B, k, wt, N, bias, out, ldo, c0);
  for (; c0 + L <= N; c0 += L) detail::gather_panel<T, 1>(vals, idx, B, k, wt, N, bias, out, ldo, c0);
  for (; c0 < N; ++c0)
    for (int64_t b = 0; b < B; ++b) {
      T s = bias ? bias[c0] : T(0);
      for (int64_t q = 0; q < k; ++q) s += vals[b * k + q] * wt[int64_t(idx[b * k + q]) * N + c0];
      out[b * ldo + c0] = s;
    }
}

// out[b, q] = dg[b, :] . wt[idx[b, q], :] for b < B, q < k (dg's rows ldg apart; out (B, k)).
// part: scratch of at least B * k vectors.
template <typename T>
void sampled_dots(const T* dg, int64_t ldg, const int32_t* idx, int64_t B, int64_t k, const T* wt, int64_t N,
                  T* out, std::vector<typename RoutedVec<T>::V>& part) {
  using R = RoutedVec<T>;
  constexpr int L = R::L, P = R::kPanel;
  part.assign(B * k, typename R::V{});
  int64_t c0 = 0;
  for (; c0 + P * L <= N; c0 += P * L) detail::dots_panel<T, P>(dg, ldg, idx, B, k, wt, N, part.data(), c0);
  for (; c0 + L <= N; c0 += L) detail::dots_panel<T, 1>(dg, ldg, idx, B, k, wt, N, part.data(), c0);
  for (int64_t e = 0; e < B * k; ++e) out[e] = R::sum(part[e]);
  for (; c0 < N; ++c0)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t q = 0; q < k; ++q) out[b * k + q] += dg[b * ldg + c0] * wt[int64_t(idx[b * k + q]) * N + c0];
}

// dwt (n, N) = for each channel j: sum over e in [start[j], start[j + 1]) of vals[e] * dg[rows[e], :]
// (dg (M, N) row-major; the entries of channel j are the rows that kept it, in CSR form).
template <typename T>
void channel_outer(const T* dg, int64_t N, const int64_t* start, const int32_t* rows, const T* vals, int64_t n,
                   T* dwt) {
  constexpr int L = RoutedVec<T>::L, P = RoutedVec<T>::kPanel;
  int64_t c0 = 0;
  for (; c0 + P * L <= N; c0 += P * L) detail::outer_panel<T, P>(dg, N, start, rows, vals, n, dwt, c0);
  for (; c0 + L <= N; c0 += L) detail::outer_panel<T, 1>(dg, N, start, rows, vals, n, dwt, c0);
  for (; c0 < N; ++c0)
    for (int64_t j = 0; j < n; ++j) {
      T s = T(0);
      for (int64_t e = start[j]; e < start[j + 1]; ++e) s += vals[e] * dg[int64_t(rows[e]) * N + c0];
      dwt[j * N + c0] = s;
    }
}

}  // namespace sparsernn
