// Shared pieces of the routed loops (routed_forward.cpp, routed_backward.cpp): the cell tag, the
// exact top-k selection (ties to the lower channel index, as the reference's stable sort) and
// small tensor helpers. The loops are the C++ twins of routed_forward / routed_backward in
// sparsernn/core/fused_routed_loops.py (same arguments and results, except that the weights come
// transposed, one contiguous (n, k*H) tensor per layer); their products are routed_products.h.
// Sequence tensors are time-major, (T, G, B, .). Tested against the reference backend.
#pragma once

#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include "fused_cpu.h"
#include "routed_products.h"

namespace sparsernn {
namespace routed {

enum class Cell { kGru, kLstm, kElman };

inline Cell cell_of(const std::string& name) {
  if (name == "gru") return Cell::kGru;
  if (name == "lstm") return Cell::kLstm;
  TORCH_CHECK(name == "elman", "routed loops: unknown cell ", name);
  return Cell::kElman;
}

inline int64_t gates_of(Cell cell) { return cell == Cell::kGru ? 3 : (cell == Cell::kLstm ? 4 : 1); }

// NaN by its bits (-ffast-math may fold std::isnan to false); a NaN score ranks first, as in torch.sort.
template <typename T>
inline T rank_key(T v) {
  if constexpr (sizeof(T) == 4) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    return (u & 0x7fffffffu) > 0x7f800000u ? std::numeric_limits<T>::infinity() : v;
  } else {
    uint64_t u;
    std::memcpy(&u, &v, 8);
    return (u & 0x7fffffffffffffffull) > 0x7ff0000000000000ull ? std::numeric_limits<T>::infinity() : v;
  }
}

// Scores as unsigned integers in the same order (NaN first, as rank_key; -0 as +0): then the
// selection below is integer compares that vectorise, with no data-dependent branches.
template <typename T>
using OrderKey = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;

template <typename T>
inline OrderKey<T> order_key(T v) {
  using U = OrderKey<T>;
  constexpr U kSign = U(1) << (8 * sizeof(T) - 1);
  v = rank_key(v);
  U u;
  std::memcpy(&u, &v, sizeof(T));
  if (u == kSign) u = 0;
  return (u & kSign) ? ~u : (u | kSign);
}

// The k best channels of s[0:n] (higher score first; equal scores: the lower index first), as
// ascending indices into idx[0:k], and mask[0:n] set to 1 there and 0 elsewhere. For at most 16
// channels each channel's rank is counted directly; for a budget of at most 16 one ascending pass
// keeps the best k so far in a sorted array; otherwise the k-th largest key is found by
// nth_element on a copy of the keys (integers: no indirection, no NaN cases), then one ascending
// pass keeps the keys above it and, of those equal to it, the lowest-indexed until k are kept.
template <typename T>
void select_top_k(const T* s, int64_t n, int64_t k, int32_t* idx, T* mask, std::vector<OrderKey<T>>& keys) {
  using U = OrderKey<T>;
  if (k >= n) {
    for (int64_t j = 0; j < n; ++j) { idx[j] = int32_t(j); mask[j] = T(1); }
    return;
  }
  keys.resize(2 * n);
  U* __restrict__ key = keys.data();
  U* __restrict__ scratch = keys.data() + n;
  for (int64_t j = 0; j < n; ++j) key[j] = order_key(s[j]);
  if (n <= 16) {
    int64_t q = 0;
    for (int64_t j = 0; j < n; ++j) {
      int64_t rank = 0;
      for (int64_t i = 0; i < n; ++i) rank += key[i] > key[j] || (key[i] == key[j] && i < j);
      const bool keep = rank < k;
      mask[j] = keep ? T(1) : T(0);
      if (keep) idx[q++] = int32_t(j);
    }
    return;
  }
  if (k <= 16) {  // a small budget: the best k so far, sorted, in registers' reach; most keys fail one compare
    U best_key[16];
    int32_t best_idx[16];
    int64_t filled = 0;
    for (int64_t j = 0; j < n; ++j) {
      const U v = key[j];
      if (filled == k && !(v > best_key[k - 1])) continue;  // on a tie the earlier, lower index stays
      int64_t p = filled < k ? filled++ : k - 1;
      while (p > 0 && best_key[p - 1] < v) {
        best_key[p] = best_key[p - 1];
        best_idx[p] = best_idx[p - 1];
        --p;
      }
      best_key[p] = v;
      best_idx[p] = int32_t(j);
    }
    std::sort(best_idx, best_idx + k);
    for (int64_t j = 0; j < n; ++j) mask[j] = T(0);
    for (int64_t q = 0; q < k; ++q) { idx[q] = best_idx[q]; mask[best_idx[q]] = T(1); }
    return;
  }
  std::copy(key, key + n, scratch);
  std::nth_element(scratch, scratch + (k - 1), scratch + n, std::greater<U>());
  const U c = scratch[k - 1];
  int64_t above = 0;
#pragma omp simd reduction(+ : above)
  for (int64_t j = 0; j < n; ++j) above += key[j] > c;
  int64_t ties = k - above, q = 0;
  for (int64_t j = 0; j < n; ++j) {
    const bool keep = key[j] > c || (key[j] == c && ties-- > 0);
    mask[j] = keep ? T(1) : T(0);
    if (keep) idx[q++] = int32_t(j);
  }
}

// The ascending indices of the kept channels of one mask row (exactly k of them).
template <typename T>
inline void kept_indices(const T* mask, int64_t n, int64_t k, int32_t* idx) {
  int64_t q = 0;
  for (int64_t j = 0; j < n && q < k; ++j)
    if (mask[j] != T(0)) idx[q++] = int32_t(j);
  TORCH_CHECK(q == k, "routed loops: a mask row keeps ", q, " channels, expected ", k);
}

inline std::vector<Tensor> contiguous_all(const std::vector<Tensor>& ts) {
  std::vector<Tensor> out;
  for (const Tensor& t : ts) out.push_back(t.contiguous());
  return out;
}


// A (T, G, B, .) tensor's pointer, or nullptr when absent.
template <typename T>
inline const T* ptr_or_null(const Tensor& t) { return t.defined() ? t.data_ptr<T>() : nullptr; }

}  // namespace routed
}  // namespace sparsernn
