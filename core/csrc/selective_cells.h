// The cells of the selective-update loops (selective_forward.cpp, selective_backward.cpp): one unit's
// forward step and its local gradients, per cell, so that the loops (the switches, the open pairs by
// neuron, the gathered products of selective_products.h, the dense steps) are written once for all three.
// The equations are sparsernn/core/cells.py's `cell_step` (gate order as torch.nn: GRU r, z, n; LSTM
// i, f, g, o; Elman one tanh block); the switch is its `switch`: a closed pair keeps h (and the LSTM's c)
// exactly; an open pair's switch gets sigmoid'(a) * (dL/dh_new (h_new - h_old) + dL/dc_new (c_new - c_old)).
//
// A cell has
// - K: its gate rows per neuron (rows j, H + j, ..., (K - 1) H + j of W_ih, W_hh, b_ih, b_hh);
// - S: the values it keeps per (sample, neuron) pair for the backward pass;
// - kHasC: whether it carries a cell state c (the LSTM);
// - kSameCoef: whether the W_ih and W_hh rows get the same gate gradients (all but the GRU, whose n gate
//   reads r * (W_hh h + b_hh));
// - unit(gx, gh, gs, h, c, c_new, s, ss): the new state from the K pre-activations gx[k * gs] (input side,
//   b_ih in) and gh[k * gs] (recurrent side, b_hh in) and the old state h (and c); the new c into c_new
//   (LSTM) and the S kept values into s[k * ss];
// - grads(s, ss, v, vc, h, c, cx, ch, cs, direct, dc_old, delta): from the kept values, v = dL/dh_new and
//   vc = dL/dc_new (LSTM), the gate gradients of the W_ih rows into cx[k * cs] and of the W_hh rows into
//   ch[k * cs] (not written when kSameCoef: cx holds both), dL/dh_old through the unit's direct path
//   (GRU: v z; the others 0), dL/dc_old (LSTM), and delta = v (h_new - h_old) + vc (c_new - c_old), what
//   the switch's straight-through gradient multiplies.
#pragma once

#include "fused_cpu.h"

namespace sparsernn {
namespace selective {

#define SELECTIVE_INLINE __attribute__((always_inline)) static inline

struct GruCell {
  static constexpr int K = 3, S = 4;  // kept: r, z, n, gh_n
  static constexpr bool kHasC = false, kSameCoef = false;
  template <typename T>
  SELECTIVE_INLINE T unit(const T* gx, const T* gh, int64_t gs, T h, T, T&, T* s, int64_t ss) {
    const T r = sigmoid<T>(gx[0] + gh[0]);
    const T z = sigmoid<T>(gx[gs] + gh[gs]);
    const T n = tanh_sat<T>(gx[2 * gs] + r * gh[2 * gs]);
    s[0] = r;
    s[ss] = z;
    s[2 * ss] = n;
    s[3 * ss] = gh[2 * gs];
    return n + z * (h - n);
  }
  template <typename T>
  SELECTIVE_INLINE void grads(const T* s, int64_t ss, T v, T, T h, T, T* cx, T* ch, int64_t cs, T& direct, T&,
                              T& delta) {
    const T r = s[0], z = s[ss], n = s[2 * ss], gn = s[3 * ss];
    const T k_n = v * (T(1) - z) * (T(1) - n * n);
    cx[0] = ch[0] = k_n * gn * r * (T(1) - r);
    cx[cs] = ch[cs] = v * (h - n) * z * (T(1) - z);
    cx[2 * cs] = k_n;
    ch[2 * cs] = k_n * r;
    direct = v * z;
    delta = v * (n + z * (h - n) - h);
  }
};

struct LstmCell {
  static constexpr int K = 4, S = 6;  // kept: i, f, g, o, c_new, tanh(c_new)
  static constexpr bool kHasC = true, kSameCoef = true;
  template <typename T>
  SELECTIVE_INLINE T unit(const T* gx, const T* gh, int64_t gs, T, T c, T& c_new, T* s, int64_t ss) {
    const T i = sigmoid<T>(gx[0] + gh[0]);
    const T f = sigmoid<T>(gx[gs] + gh[gs]);
    const T g = tanh_sat<T>(gx[2 * gs] + gh[2 * gs]);
    const T o = sigmoid<T>(gx[3 * gs] + gh[3 * gs]);
    c_new = f * c + i * g;
    const T tc = tanh_sat<T>(c_new);
    s[0] = i;
    s[ss] = f;
    s[2 * ss] = g;
    s[3 * ss] = o;
    s[4 * ss] = c_new;
    s[5 * ss] = tc;
    return o * tc;
  }
  template <typename T>
  SELECTIVE_INLINE void grads(const T* s, int64_t ss, T v, T vc, T h, T c, T* cx, T*, int64_t cs, T& direct,
                              T& dc_old, T& delta) {
    const T i = s[0], f = s[ss], g = s[2 * ss], o = s[3 * ss], cn = s[4 * ss], tc = s[5 * ss];
    const T dc = vc + v * o * (T(1) - tc * tc);
    cx[0] = dc * g * i * (T(1) - i);
    cx[cs] = dc * c * f * (T(1) - f);
    cx[2 * cs] = dc * i * (T(1) - g * g);
    cx[3 * cs] = v * tc * o * (T(1) - o);
    direct = T(0);
    dc_old = dc * f;
    delta = v * (o * tc - h) + vc * (cn - c);
  }
};

struct ElmanCell {
  static constexpr int K = 1, S = 1;  // kept: h_new
  static constexpr bool kHasC = false, kSameCoef = true;
  template <typename T>
  SELECTIVE_INLINE T unit(const T* gx, const T* gh, int64_t, T, T, T&, T* s, int64_t) {
    const T hn = tanh_sat<T>(gx[0] + gh[0]);
    s[0] = hn;
    return hn;
  }
  template <typename T>
  SELECTIVE_INLINE void grads(const T* s, int64_t, T v, T, T h, T, T* cx, T*, int64_t, T& direct, T&, T& delta) {
    const T hn = s[0];
    cx[0] = v * (T(1) - hn * hn);
    direct = T(0);
    delta = v * (hn - h);
  }
};

#undef SELECTIVE_INLINE

}  // namespace selective
}  // namespace sparsernn

// SELECTIVE_CELL_DISPATCH(cell, tensor, Fn, args...): Fn<scalar, Cell>(args...) for the cell named
// "gru" / "lstm" / "elman" and tensor's dtype (float32 / float64).
#define SELECTIVE_CELL_DISPATCH(cell, tensor, Fn, ...)                                                     \
  if ((cell) == "gru") { DISPATCH(tensor, Fn<scalar, selective::GruCell>(__VA_ARGS__)) }                    \
  if ((cell) == "lstm") { DISPATCH(tensor, Fn<scalar, selective::LstmCell>(__VA_ARGS__)) }                  \
  if ((cell) == "elman") { DISPATCH(tensor, Fn<scalar, selective::ElmanCell>(__VA_ARGS__)) }                \
  TORCH_CHECK(false, "sparsernn selective loops: unknown cell ", (cell));
