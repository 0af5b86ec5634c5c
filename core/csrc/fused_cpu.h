// Shared helpers of the fused backend's C++ CPU loops (see fused_forward.cpp, fused_backward.cpp).
//
// Shapes: G layers, T steps, B sequences, H units, k gates; every tensor is made
// contiguous; rows r = g * B + b of a (G, B, .) tensor.
#pragma once

#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "small_gemm.h"

namespace sparsernn {

using at::Tensor;
using OptTensor = c10::optional<Tensor>;

// Overflow-safe sigmoid and tanh. The loops build with -ffast-math (finite-math-only, so GCC
// vectorises exp/tanh with libmvec), under which exp(x) that overflows, and anything computed
// from its inf, is undefined: an input of 500 gave NaN. So neither function ever sees an
// argument whose exp overflows:
// - sigmoid takes exp of -|v| only (it underflows to 0, it never overflows); v >= 0 gives
//   1 / (1 + exp(-v)) as before, v < 0 the same value written exp(v) / (1 + exp(v)); |v| is
//   capped where exp(-|v|) is already 0 (or the smallest subnormal) in T. From
//   v >= kSigmoidOne<T> on, where the true sigmoid rounds to 1 in T, it is exactly 1: fast-math's
//   division (a reciprocal estimate) gives 1 - ulp there, and its derivative s (1 - s) times a
//   huge input was a huge wrong weight gradient.
// - tanh is exactly +-1 from |v| >= kTanhSaturated<T> on, where the true tanh rounds to +-1 in T
//   (as the reference's does; libmvec's tanh may return 1 - ulp there, and then the derivative
//   1 - tanh^2 times a huge input is a huge wrong gradient); below it, std::tanh of v.
// Both stay branch-free (selects and min/max), so the loops keep vectorising; for ordinary
// inputs the results are those of before (within an ulp for sigmoid of a negative argument).
template <typename T> constexpr T kExpUnderflow = T(745);  // exp(-745) < the smallest double
template <> constexpr float kExpUnderflow<float> = 104.0f;  // exp(-104) < the smallest float
template <typename T> constexpr T kSigmoidOne = T(38);      // exp(-38) ~ 3.1e-17 < eps(double) / 4
template <> constexpr float kSigmoidOne<float> = 17.5f;       // exp(-17.5) ~ 2.5e-8 < eps(float) / 4
template <typename T> constexpr T kTanhSaturated = T(19.5);  // 1 - tanh(19.5) ~ 2.3e-17 < eps(double) / 4
template <> constexpr float kTanhSaturated<float> = 9.5f;     // 1 - tanh(9.5) ~ 1.1e-8 < eps(float) / 4

// Below -kExpOverflow<T>, exp(-v) overflows and torch's 1 / (1 + exp(-v)) is exactly 0; so is this
// sigmoid there (not a subnormal exp(v)): a state that is exactly 0 in the reference must be exactly 0
// here too, since the router's |z| has a kink at 0.
template <typename T> constexpr T kExpOverflow = T(709.782712893384);  // log of the largest double
template <> constexpr float kExpOverflow<float> = 88.72283905206835f;  // log of the largest float

// Always inlined: a loop that calls them vectorises only if they are (a large caller, e.g. the selective
// loops, otherwise gets libm's scalar calls: measured 3x slower).
template <typename T>
__attribute__((always_inline)) inline T sigmoid(T v) {
  const T e = std::exp(-std::min(std::abs(v), kExpUnderflow<T>));
  const T s = T(1) / (T(1) + e);
  return v >= kSigmoidOne<T> ? T(1) : (v >= T(0) ? s : (v < -kExpOverflow<T> ? T(0) : e * s));
}

template <typename T>
__attribute__((always_inline)) inline T tanh_sat(T v) {
  const T t = std::tanh(std::min(std::max(v, -kTanhSaturated<T>), kTanhSaturated<T>));
  return std::abs(v) >= kTanhSaturated<T> ? std::copysign(T(1), v) : t;
}

inline const Tensor* opt(const OptTensor& t) { return t.has_value() && t->defined() ? &*t : nullptr; }

// h[r, :] *= alive[t, 0, b, 0] for the rows of a step that resets.
template <typename T>
inline void apply_reset(T* __restrict__ state, const T* __restrict__ alive_t, int64_t G, int64_t B, int64_t H) {
  for (int64_t g = 0; g < G; ++g)
    for (int64_t b = 0; b < B; ++b) {
      const T a = alive_t[b];
      T* row = state + (g * B + b) * H;
      for (int64_t j = 0; j < H; ++j) row[j] *= a;
    }
}

// dst (cols, rows) = src (rows, cols)^T, both row-major, in 8 x 8 tiles (ATen's copy of a
// transposed view takes ~3x longer at a recurrent weight's size).
template <typename T>
inline void transpose_into(const T* __restrict__ src, T* __restrict__ dst, int64_t rows, int64_t cols) {
  constexpr int64_t kTile = 8;
  for (int64_t i0 = 0; i0 < rows; i0 += kTile)
    for (int64_t j0 = 0; j0 < cols; j0 += kTile) {
      const int64_t i1 = std::min(i0 + kTile, rows), j1 = std::min(j0 + kTile, cols);
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = j0; j < j1; ++j) dst[j * rows + i] = src[i * cols + j];
    }
}

// A (T, G, B, .) sequence tensor as contiguous group-major (G, T, B, .) memory; no copy when it
// already is (a transposed view of such memory, e.g. what the loops here return).
inline Tensor group_major(const Tensor& x) { return x.transpose(0, 1).contiguous(); }

// An optional sequence tensor as contiguous group-major memory; undefined when absent.
inline Tensor group_major_or_none(const OptTensor& t) {
  const Tensor* p = opt(t);
  return p ? group_major(*p) : Tensor();
}

// An optional tensor made contiguous; undefined when absent.
inline Tensor contiguous_or_none(const OptTensor& t) {
  const Tensor* p = opt(t);
  return p ? p->contiguous() : Tensor();
}

// Index of row r = g * B + b of step t in group-major (G, T, B, .) memory.
inline int64_t group_major_row(int64_t t, int64_t r, int64_t steps, int64_t B) {
  return ((r / B) * steps + t) * B + (r % B);
}

// DISPATCH(tensor, call): `call` (which may name `scalar`) for float32 or float64 tensors.
#define DISPATCH(tensor, ...)                                                             \
  if ((tensor).scalar_type() == at::kFloat) { using scalar = float; return __VA_ARGS__; }   \
  if ((tensor).scalar_type() == at::kDouble) { using scalar = double; return __VA_ARGS__; } \
  TORCH_CHECK(false, "sparsernn fused CPU loops take float32 or float64, got ", (tensor).scalar_type());


// The GRU / LSTM forward loops (as fused_loops.py's gru_forward / lstm_forward) from a group's
// per-layer tensors: x (T, B, I), then per layer W_ih (kH, I), b_ih (kH), W_hh (kH, H), b_hh (kH);
// the input projections are computed here. A gated call with `save` (training) also returns, after a,
// each layer's open count (G,) int64 and sum of sigmoid(a) (G,), taken inside the loop.
std::vector<Tensor> gru_group_forward(Tensor x, Tensor h, std::vector<Tensor> w_ih, std::vector<Tensor> b_ih,
                                      std::vector<Tensor> w_hh, std::vector<Tensor> b_hh, OptTensor alive,
                                      std::vector<bool> resets, OptTensor gate_x, OptTensor gate_w, bool save);
std::vector<Tensor> lstm_group_forward(Tensor x, Tensor h, Tensor c, std::vector<Tensor> w_ih,
                                       std::vector<Tensor> b_ih, std::vector<Tensor> w_hh, std::vector<Tensor> b_hh,
                                       OptTensor alive, std::vector<bool> resets, OptTensor gate_x, OptTensor gate_w,
                                       bool save);
// Weight and bias gradients of gates = inputs @ W^T + b over a sequence: dW (G, W, n) and db (G, W)
// from dgates (T, G, B, W) and inputs (T, G, B, n), or (T, B, n) when the group shares them.
std::vector<Tensor> weight_grads(Tensor dgates, Tensor inputs);
std::vector<Tensor> single_state_backward(Tensor dy, Tensor dh, Tensor k_h, OptTensor carry, OptTensor extra,
                                          Tensor w_hh, int64_t n_gates);
// d_soft (G,), optional: the gradient of each layer's sum of sigmoid(a) (the forward's second
// sum), added to the gradient of every switch pre-activation inside the recursion.
std::vector<Tensor> gru_cell_backward(Tensor dy, Tensor dh, OptTensor da_ext, Tensor h_read, Tensor rz, Tensor n,
                                 Tensor ghn, OptTensor preact, OptTensor gate_w, OptTensor alive,
                                 std::vector<bool> resets, Tensor w_hh, OptTensor d_soft);
std::vector<Tensor> lstm_cell_backward(Tensor dy, Tensor dh, Tensor dc, OptTensor da_ext, Tensor h_read, Tensor c_read,
                                  Tensor act, Tensor cand, OptTensor preact, OptTensor gate_w, OptTensor alive,
                                  std::vector<bool> resets, Tensor w_hh, OptTensor d_soft);

// The rhythm gate's schedule (rhythm.cpp) at times (N,): (N, H), and its parameters' gradients
// (omega (K,), phase (H, K), amplitude (H, K), offset (H,)) from grad (N, H).
Tensor rhythm_schedule(Tensor times, Tensor omega, Tensor phase, Tensor amplitude, Tensor offset);
std::vector<Tensor> rhythm_schedule_backward(Tensor grad, Tensor times, Tensor omega, Tensor phase,
                                             Tensor amplitude);

// The routed loops (routed_forward.cpp, routed_backward.cpp; TorchScript twins in fused_routed_loops.py): weights transposed,
// one contiguous (n, k*H) tensor per layer; sequences time-major (T, G, B, .).
std::vector<Tensor> routed_forward(std::string cell, Tensor x, Tensor h, OptTensor c, OptTensor alive,
                                   std::vector<bool> resets, std::vector<Tensor> w_ih_t, Tensor b_ih,
                                   std::vector<Tensor> w_hh_t, Tensor b_hh, Tensor scale, Tensor bias, Tensor down,
                                   Tensor up, int64_t k_in, int64_t k_h, OptTensor gate_x, OptTensor gate_w,
                                   bool save);
std::vector<Tensor> routed_backward(std::string cell, Tensor dy, Tensor dh, Tensor dc, Tensor ds_ext, OptTensor alive,
                                    std::vector<bool> resets, OptTensor k_x, OptTensor k_h, OptTensor gru_saved,
                                    OptTensor preact, OptTensor gate_w, OptTensor da_ext, OptTensor carry, OptTensor k_c,
                                    OptTensor c_carry, OptTensor c_keep, OptTensor h_from_c, OptTensor extra,
                                    Tensor st_slope, Tensor z, Tensor u, Tensor mask, Tensor scale,
                                    std::vector<Tensor> w_ih_t, std::vector<Tensor> w_hh_t, Tensor up, Tensor down,
                                    int64_t k_in, int64_t k_h_count);
// dW (G, k*H, n) and db (G, 1, k*H) of gates = kept @ W^T + b over a sequence, dW accumulated over the kept
// entries only: the columns [offset, offset + n) of values (T, G, B, .) where mask is nonzero, against
// dgates (T, G, B, k*H).
std::vector<Tensor> routed_weight_grads(Tensor dgates, Tensor values, Tensor mask, int64_t offset, int64_t n);

// The selective-update GRU, LSTM and Elman layers that skip closed neurons (selective_forward.cpp,
// selective_backward.cpp, selective_cells.h; sparsernn/core/fused_selective.py). Sequences time-major
// (T, G, B, .); weights as the layer keeps them; c0, dc and c_read only for the LSTM.
std::vector<Tensor> selective_forward(std::string cell, Tensor x, Tensor h0, OptTensor c0, std::vector<Tensor> w_ih,
                                      std::vector<Tensor> b_ih, std::vector<Tensor> w_hh, std::vector<Tensor> b_hh,
                                      OptTensor alive, std::vector<bool> resets, Tensor gate_x, OptTensor gate_w,
                                      bool save, double dense_above);
std::vector<Tensor> selective_backward(std::string cell, Tensor dy, Tensor dh, OptTensor dc, OptTensor da_ext, Tensor x,
                                       Tensor h_read, OptTensor c_read, Tensor vals, Tensor a, Tensor dense,
                                       OptTensor gate_w, OptTensor alive, std::vector<bool> resets,
                                       std::vector<Tensor> w_ih, std::vector<Tensor> w_hh, bool need_dx);

}  // namespace sparsernn
