// The products of selective-update layers (suRNN) that skip closed neurons: a neuron's K gate rows of a
// weight matrix against the state (or input) rows of the samples that open it. Organised by neuron, as
// the routed layers' channel-major products (routed_products.h, whose vector type they share): each open
// neuron's rows are read once per step for all the samples that open it, and a closed neuron's rows are
// not read at all.
//
// - rows_dots:          out[k, q]  = rows[k] . vecs[q]                                   (forward)
// - rows_scatter_outer: dvecs[q] += sum_k coef[q, k] * rows[k];  drows[k] += sum_q coef[q, k] * vecs[q]
//                                                                                         (backward)
// Rows and vectors are n contiguous values; the rows of one neuron are K different rows of a weight
// matrix (a GRU's r, z, n gate rows of W_hh are rows j, H + j, 2H + j). Tested through the fused
// backend's tests against the reference.
#pragma once

#include <cstdint>
#include <vector>

#include "routed_products.h"

namespace sparsernn {
namespace selective {

// The lane sums of L vectors (L = lanes per vector) in one tree of shuffles and adds: out[i] = sum of v[i]'s
// lanes. At each level two vectors, each holding groups of 2s partial sums, become one holding groups of s
// (the two halves of every group added), so L dots cost about 3 operations each instead of ~2L for
// summing every vector's lanes one by one; with H = 64 that reduction was most of a dot's cost.
template <typename T>
struct LaneSums;

template <>
struct LaneSums<float> {
  using V = RoutedVec<float>::V;
  typedef int32_t M __attribute__((vector_size(64)));
  static inline V fold(V a, V b, M lo, M hi) { return __builtin_shuffle(a, b, lo) + __builtin_shuffle(a, b, hi); }
  static inline V all(const V* v) {
    const M lo8 = {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23};
    const M hi8 = lo8 + 8;
    const M lo4 = {0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27};
    const M hi4 = lo4 + 4;
    const M lo2 = {0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29};
    const M hi2 = lo2 + 2;
    const M lo1 = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
    const M hi1 = lo1 + 1;
    V a[8], b[4], c[2];
    for (int i = 0; i < 8; ++i) a[i] = fold(v[2 * i], v[2 * i + 1], lo8, hi8);
    for (int i = 0; i < 4; ++i) b[i] = fold(a[2 * i], a[2 * i + 1], lo4, hi4);
    for (int i = 0; i < 2; ++i) c[i] = fold(b[2 * i], b[2 * i + 1], lo2, hi2);
    return fold(c[0], c[1], lo1, hi1);
  }
};

template <>
struct LaneSums<double> {
  using V = RoutedVec<double>::V;
  typedef int64_t M __attribute__((vector_size(64)));
  static inline V fold(V a, V b, M lo, M hi) { return __builtin_shuffle(a, b, lo) + __builtin_shuffle(a, b, hi); }
  static inline V all(const V* v) {
    const M lo4 = {0, 1, 2, 3, 8, 9, 10, 11};
    const M hi4 = lo4 + 4;
    const M lo2 = {0, 1, 4, 5, 8, 9, 12, 13};
    const M hi2 = lo2 + 2;
    const M lo1 = {0, 2, 4, 6, 8, 10, 12, 14};
    const M hi1 = lo1 + 1;
    V a[4], b[2];
    for (int i = 0; i < 4; ++i) a[i] = fold(v[2 * i], v[2 * i + 1], lo4, hi4);
    for (int i = 0; i < 2; ++i) b[i] = fold(a[2 * i], a[2 * i + 1], lo2, hi2);
    return fold(b[0], b[1], lo1, hi1);
  }
};

// out[i] = the lane sum of v[i] for i < count.
template <typename T>
inline void lane_sums(const typename RoutedVec<T>::V* v, int count, T* out) {
  using V = typename RoutedVec<T>::V;
  constexpr int L = RoutedVec<T>::L;
  for (int c = 0; c < count; c += L) {
    V group[L];
    const int n = count - c < L ? count - c : L;
    for (int i = 0; i < L; ++i) group[i] = i < n ? v[c + i] : V{};
    const V sums = LaneSums<T>::all(group);
    for (int i = 0; i < n; ++i) out[c + i] = sums[i];
  }
}

// out[k * NB + q] = rows[k] . vecs[q] for NB vectors at once: each row chunk is loaded once for all of them.
template <typename T, int K, int NB>
inline void rows_dot_block(const T* const* rows, const T* const* vecs, int64_t n, T* out) {
  using R = RoutedVec<T>;
  using V = typename R::V;
  constexpr int L = R::L;
  if (n < L) {  // a narrow input (e.g. an RL observation): plain sums, no vector reduction to pay
    for (int k = 0; k < K; ++k)
      for (int q = 0; q < NB; ++q) {
        T s = T(0);
        for (int64_t i = 0; i < n; ++i) s += rows[k][i] * vecs[q][i];
        out[k * NB + q] = s;
      }
    return;
  }
  V acc[K][NB];
#pragma GCC unroll 4
  for (int k = 0; k < K; ++k)
#pragma GCC unroll 4
    for (int q = 0; q < NB; ++q) acc[k][q] = V{};
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    V w[K];
#pragma GCC unroll 4
    for (int k = 0; k < K; ++k) w[k] = R::load(rows[k] + i);
#pragma GCC unroll 4
    for (int q = 0; q < NB; ++q) {
      const V xv = R::load(vecs[q] + i);
#pragma GCC unroll 4
      for (int k = 0; k < K; ++k) acc[k][q] += w[k] * xv;
    }
  }
  lane_sums<T>(&acc[0][0], K * NB, out);
  for (; i < n; ++i)
    for (int k = 0; k < K; ++k)
      for (int q = 0; q < NB; ++q) out[k * NB + q] += rows[k][i] * vecs[q][i];
}

// out[q * K + k] = rows[k] . vecs[q] for q < nb (any number), in blocks of 4 vectors.
template <typename T, int K>
inline void rows_dots(const T* const* rows, const T* const* vecs, int64_t nb, int64_t n, T* out) {
  T block[K * 4];
  int64_t q = 0;
  for (; q + 4 <= nb; q += 4) {
    rows_dot_block<T, K, 4>(rows, vecs + q, n, block);
    for (int k = 0; k < K; ++k)
      for (int p = 0; p < 4; ++p) out[(q + p) * K + k] = block[k * 4 + p];
  }
  const int64_t rest = nb - q;
  if (rest == 0) return;
  if (rest == 3) rows_dot_block<T, K, 3>(rows, vecs + q, n, block);
  else if (rest == 2) rows_dot_block<T, K, 2>(rows, vecs + q, n, block);
  else rows_dot_block<T, K, 1>(rows, vecs + q, n, block);
  for (int k = 0; k < K; ++k)
    for (int64_t p = 0; p < rest; ++p) out[(q + p) * K + k] = block[k * rest + p];
}

// For q < nb: dvecs[q] += sum_k coef[q * K + k] * rows[k] (skipped when dvecs is null), and for k < K:
// drows[k] += sum_q coef[q * K + k] * vecs[q]. Samples go in tiles of kTile: within a tile one pass over
// the n columns keeps a chunk of the K rows and of their K gradient rows in registers while the tile's
// vectors stream past. The tile bounds the rows touched per chunk: the samples' rows lie whole rows
// (often 4 KiB) apart, all in one L1 set, and 64 of them at once (a rhythm step that opens a neuron
// for the whole batch) thrashed it: 60 % of the backward pass waited on those loads.
template <typename T, int K>
inline void rows_scatter_outer(const T* const* rows, T* const* drows, const T* coef, const T* const* vecs,
                               T* const* dvecs, int64_t nb, int64_t n) {
  using R = RoutedVec<T>;
  using V = typename R::V;
  constexpr int L = R::L;
  constexpr int64_t kTile = 4;
  for (int64_t q0 = 0; q0 < nb; q0 += kTile) {
    const int64_t q1 = q0 + kTile < nb ? q0 + kTile : nb;
    int64_t i = 0;
    for (; i + L <= n; i += L) {
      V w[K], dw[K];
#pragma GCC unroll 4
      for (int k = 0; k < K; ++k) {
        w[k] = R::load(rows[k] + i);
        dw[k] = R::load(drows[k] + i);
      }
      for (int64_t q = q0; q < q1; ++q) {
        const T* cq = coef + q * K;
        const V xv = R::load(vecs[q] + i);
        if (dvecs) {
          V d = R::load(dvecs[q] + i);
#pragma GCC unroll 4
          for (int k = 0; k < K; ++k) d += cq[k] * w[k];
          R::store(dvecs[q] + i, d);
        }
#pragma GCC unroll 4
        for (int k = 0; k < K; ++k) dw[k] += cq[k] * xv;
      }
#pragma GCC unroll 4
      for (int k = 0; k < K; ++k) R::store(drows[k] + i, dw[k]);
    }
    for (; i < n; ++i)
      for (int64_t q = q0; q < q1; ++q) {
        const T* cq = coef + q * K;
        T d = T(0);
        for (int k = 0; k < K; ++k) {
          d += cq[k] * rows[k][i];
          drows[k][i] += cq[k] * vecs[q][i];
        }
        if (dvecs) dvecs[q][i] += d;
      }
  }
}

}  // namespace selective
}  // namespace sparsernn

namespace sparsernn {
namespace selective {

// The open (sample, neuron) pairs of one step, by neuron: the samples that open neuron j are
// samples[start[j] .. start[j + 1]), ascending. a (B, H) row-major holds the switches' pre-activations
// (open where a > 0). Returns the number of open pairs. start: H + 1 entries; samples: B * H;
// cursor: scratch.
template <typename T>
inline int64_t open_pairs_by_neuron(const T* a, int64_t B, int64_t H, int64_t* start, int32_t* samples,
                                    std::vector<int64_t>& cursor) {
  for (int64_t j = 0; j <= H; ++j) start[j] = 0;
  for (int64_t b = 0; b < B; ++b) {
    const T* ab = a + b * H;
    int64_t* count = start + 1;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) count[j] += ab[j] > T(0);
  }
  for (int64_t j = 0; j < H; ++j) start[j + 1] += start[j];
  cursor.assign(start, start + H);
  for (int64_t b = 0; b < B; ++b) {
    const T* ab = a + b * H;
    for (int64_t j = 0; j < H; ++j)
      if (ab[j] > T(0)) samples[cursor[j]++] = int32_t(b);
  }
  return start[H];
}

}  // namespace selective
}  // namespace sparsernn
