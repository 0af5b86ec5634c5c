// Backward recursions of the fused backend on a CPU.
//
// single_state_backward: the generic recursion of sparsernn/core/fused_loops.py
// (Elman), with the factors computed in Python (core/fused_factors.py).
// gru_backward / lstm_backward: the same recursion with the cell's local factors
// (core/fused_factors.py, written out per element) computed inside the step, and
// the gate-input gradients written out directly, so the Python side only adds the
// weight gradients. Every gradient is tested against the reference backend.
#include "fused_cpu.h"

namespace sparsernn {
namespace {

// The gradient reaching the previous step's state: dh = (dgates_t @ W_hh + base), times the
// reset multiplier on a step that resets (alive_t, or nullptr when nothing resets here).
// dgates_t: step t of group-major (G, T, B, K) gate gradients (groups `steps * B * K` apart).
template <typename T>
void to_previous_step(Tensor& dh, const T* dgates_t, int64_t steps, const Tensor& w_hh, const T* __restrict__ base,
                      const T* alive_t, int64_t G, int64_t B, int64_t H) {
  const int64_t K = w_hh.size(1);
  group_gemm<T>(dgates_t, steps * B * K, K, w_hh.data_ptr<T>(), dh.data_ptr<T>(), G, B, K, H);
  T* __restrict__ nd = dh.data_ptr<T>();
  for (int64_t x = 0; x < G * B * H; ++x) nd[x] += base[x];
  if (alive_t) apply_reset<T>(nd, alive_t, G, B, H);
}

// A cell backward's optional inputs (made contiguous, sequences group-major; undefined when absent)
// and its output da. GATED (a compile-time switch, so the element loops vectorise): the layer has
// an update gate; then absent gate weights (G, 1, H) and external gradients of the switch
// pre-activations read as zeros, which change no result, and da is (G, T, B, H); else da is empty.
struct GateGrads {
  Tensor preact, gate_w, da_ext, alive, da, d_soft;
};

template <bool GATED>
GateGrads gate_grads(const OptTensor& preact, const OptTensor& gate_w, const OptTensor& da_ext,
                     const OptTensor& alive, const OptTensor& d_soft, int64_t G, int64_t steps, int64_t B, int64_t H,
                     const at::TensorOptions& opts) {
  GateGrads in{group_major_or_none(preact), contiguous_or_none(gate_w), group_major_or_none(da_ext),
               contiguous_or_none(alive), at::empty({0}, opts), contiguous_or_none(d_soft)};
  if (GATED) {
    if (!in.gate_w.defined()) in.gate_w = at::zeros({G, 1, H}, opts);
    if (!in.da_ext.defined()) in.da_ext = at::zeros_like(in.preact);
    if (!in.d_soft.defined()) in.d_soft = at::zeros({G}, opts);
    in.da = at::empty({G, steps, B, H}, opts);
  }
  return in;
}

template <typename T>
std::vector<Tensor> single_state_backward_impl(Tensor dy, Tensor dh0, Tensor k_h, OptTensor carry_o,
                                               OptTensor extra_o, Tensor w_hh, int64_t n_gates) {
  dy = dy.contiguous();
  k_h = k_h.contiguous();
  w_hh = w_hh.contiguous();
  const int64_t steps = dy.size(0), G = dy.size(1), B = dy.size(2), H = dy.size(3), R = G * B;
  const int64_t K = n_gates * H;
  auto opts = dy.options();
  const Tensor* carry = opt(carry_o);
  const Tensor* extra = opt(extra_o);
  Tensor carry_c = carry ? carry->contiguous() : Tensor();
  Tensor extra_c = extra ? extra->contiguous() : Tensor();
  Tensor dh_all = at::empty({steps, G, B, H}, opts);
  Tensor dh = dh0.contiguous().clone();
  Tensor base = at::empty({G, B, H}, opts);
  Tensor dgh = at::empty({G, B, K}, opts);
  const T* dyp = dy.data_ptr<T>();
  const T* khp = k_h.data_ptr<T>();
  T* dallp = dh_all.data_ptr<T>();
  T* basep = base.data_ptr<T>();
  T* dghp = dgh.data_ptr<T>();
  for (int64_t i = 0; i < steps; ++i) {
    const int64_t t = steps - 1 - i;
    T* __restrict__ dhp = dh.data_ptr<T>();
    const T* __restrict__ cr = carry ? carry_c.data_ptr<T>() + t * R * H : nullptr;
    for (int64_t r = 0; r < R; ++r) {
      T* __restrict__ d = dhp + r * H;
      const T* __restrict__ yv = dyp + (t * R + r) * H;
      T* __restrict__ rec = dallp + (t * R + r) * H;
      T* __restrict__ bs = basep + r * H;
      const T* __restrict__ k = khp + (t * R + r) * K;
      T* __restrict__ out = dghp + r * K;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const T v = d[j] + yv[j];
        d[j] = v;
        rec[j] = v;
        bs[j] = cr ? v * cr[r * H + j] : T(0);
      }
      for (int64_t q = 0; q < n_gates; ++q) {
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) out[q * H + j] = k[q * H + j] * d[j];
      }
    }
    group_gemm<T>(dghp, B * K, K, w_hh.data_ptr<T>(), dh.data_ptr<T>(), G, B, K, H);
    T* __restrict__ nd = dh.data_ptr<T>();
    const T* __restrict__ ex = extra ? extra_c.data_ptr<T>() + t * R * H : nullptr;
    for (int64_t x = 0; x < R * H; ++x) nd[x] += basep[x] + (ex ? ex[x] : T(0));
  }
  return {dh_all, dh};
}

template <typename T, bool GATED>  // GATED: see gate_grads
std::vector<Tensor> gru_backward_impl(Tensor dy, Tensor dh0, OptTensor da_ext_o, Tensor h_read, Tensor rz, Tensor n,
                                      Tensor ghn, OptTensor preact_o, OptTensor gate_w_o, OptTensor alive_o,
                                      const std::vector<bool>& resets, Tensor w_hh, OptTensor d_soft_o) {
  // Sequence tensors group-major (see fused_forward.cpp); the saved ones already are.
  dy = group_major(dy); h_read = group_major(h_read); rz = group_major(rz); n = group_major(n);
  ghn = group_major(ghn);
  w_hh = w_hh.contiguous();
  const int64_t G = dy.size(0), steps = dy.size(1), B = dy.size(2), H = dy.size(3), R = G * B;
  auto opts = dy.options();
  const GateGrads in = gate_grads<GATED>(preact_o, gate_w_o, da_ext_o, alive_o, d_soft_o, G, steps, B, H, opts);
  const bool alive = in.alive.defined();
  Tensor dgx = at::empty({G, steps, B, 3 * H}, opts);
  Tensor dgh = at::empty({G, steps, B, 3 * H}, opts);
  Tensor dh = dh0.contiguous().clone();
  Tensor base = at::empty({G, B, H}, opts);
  const T* dyp = dy.data_ptr<T>();
  const T* hrp = h_read.data_ptr<T>();
  const T* rzp = rz.data_ptr<T>();
  const T* np_ = n.data_ptr<T>();
  const T* gp = ghn.data_ptr<T>();
  const T* ap = GATED ? in.preact.data_ptr<T>() : nullptr;
  const T* ep = GATED ? in.da_ext.data_ptr<T>() : nullptr;
  const T* gwp = GATED ? in.gate_w.data_ptr<T>() : nullptr;
  const T* dsp = GATED ? in.d_soft.data_ptr<T>() : nullptr;  // the gradient of each layer's sum of sigmoid(a)
  T* dap = GATED ? in.da.data_ptr<T>() : nullptr;
  T* dxp = dgx.data_ptr<T>();
  T* dhg = dgh.data_ptr<T>();
  for (int64_t i = 0; i < steps; ++i) {
    const int64_t t = steps - 1 - i;
    T* __restrict__ dhp = dh.data_ptr<T>();
    T* __restrict__ bs = base.data_ptr<T>();
    for (int64_t r = 0; r < R; ++r) {
      const T* __restrict__ w = GATED ? gwp + (r / B) * H : nullptr;
      const T d_soft = GATED ? dsp[r / B] : T(0);
      const int64_t o = group_major_row(t, r, steps, B) * H;  // this step's row in sequence tensors
      const int64_t s = r * H;                                 // the row in state tensors
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const T v = dhp[s + j] + dyp[o + j];
        const T rr = rzp[2 * o + j], zz = rzp[2 * o + H + j], nn = np_[o + j], h0 = hrp[o + j];
        const T k_n = (T(1) - zz) * (T(1) - nn * nn);
        const T k_r = k_n * gp[o + j] * rr * (T(1) - rr);
        const T k_z = (h0 - nn) * zz * (T(1) - zz);
        T u = T(1), carry = zz, b = T(0);
        if constexpr (GATED) {
          const T a = ap[o + j];
          u = a > T(0) ? T(1) : T(0);
          const T sg = sigmoid<T>(a);
          const T k_a = (nn + zz * (h0 - nn) - h0) * sg * (T(1) - sg) * u;  // open pairs only (cells.py: switch)
          const T e = ep[o + j] + d_soft * (sg * (T(1) - sg));  // every pair: the rate loss's sigmoid sum
          dap[o + j] = e + v * k_a;
          carry = u * zz + (T(1) - u) + w[j] * k_a;
          b = w[j] * e;
        }
        const T vu = v * u;
        dxp[3 * o + j] = vu * k_r;
        dxp[3 * o + H + j] = vu * k_z;
        dxp[3 * o + 2 * H + j] = vu * k_n;
        dhg[3 * o + j] = vu * k_r;
        dhg[3 * o + H + j] = vu * k_z;
        dhg[3 * o + 2 * H + j] = vu * k_n * rr;
        bs[s + j] = v * carry + b;
      }
    }
    to_previous_step<T>(dh, dhg + t * B * 3 * H, steps, w_hh, bs, alive && resets[t] ? in.alive.data_ptr<T>() + t * B : nullptr,
                        G, B, H);
  }
  return {dgx.transpose(0, 1), dgh.transpose(0, 1), dh, GATED ? in.da.transpose(0, 1) : in.da};
}

template <typename T, bool GATED>  // GATED: see gate_grads
std::vector<Tensor> lstm_backward_impl(Tensor dy, Tensor dh0, Tensor dc0, OptTensor da_ext_o, Tensor h_read,
                                       Tensor c_read, Tensor act, Tensor cand, OptTensor preact_o, OptTensor gate_w_o,
                                       OptTensor alive_o, const std::vector<bool>& resets, Tensor w_hh,
                                       OptTensor d_soft_o) {
  dy = group_major(dy); h_read = group_major(h_read); c_read = group_major(c_read); act = group_major(act);
  cand = group_major(cand);
  w_hh = w_hh.contiguous();
  const int64_t G = dy.size(0), steps = dy.size(1), B = dy.size(2), H = dy.size(3), R = G * B;
  auto opts = dy.options();
  const GateGrads in = gate_grads<GATED>(preact_o, gate_w_o, da_ext_o, alive_o, d_soft_o, G, steps, B, H, opts);
  const bool alive = in.alive.defined();
  Tensor dgates = at::empty({G, steps, B, 4 * H}, opts);
  Tensor dh = dh0.contiguous().clone();
  Tensor dc = dc0.contiguous().clone();
  Tensor base = at::empty({G, B, H}, opts);
  const T* dyp = dy.data_ptr<T>();
  const T* hrp = h_read.data_ptr<T>();
  const T* crp = c_read.data_ptr<T>();
  const T* acp = act.data_ptr<T>();
  const T* cnp = cand.data_ptr<T>();
  const T* ap = GATED ? in.preact.data_ptr<T>() : nullptr;
  const T* ep = GATED ? in.da_ext.data_ptr<T>() : nullptr;
  const T* gwp = GATED ? in.gate_w.data_ptr<T>() : nullptr;
  const T* dsp = GATED ? in.d_soft.data_ptr<T>() : nullptr;  // the gradient of each layer's sum of sigmoid(a)
  T* dap = GATED ? in.da.data_ptr<T>() : nullptr;
  T* dg = dgates.data_ptr<T>();
  for (int64_t i = 0; i < steps; ++i) {
    const int64_t t = steps - 1 - i;
    T* __restrict__ dhp = dh.data_ptr<T>();
    T* __restrict__ dcp = dc.data_ptr<T>();
    T* __restrict__ bs = base.data_ptr<T>();
    for (int64_t r = 0; r < R; ++r) {
      const T* __restrict__ w = GATED ? gwp + (r / B) * H : nullptr;
      const T d_soft = GATED ? dsp[r / B] : T(0);
      const int64_t o = group_major_row(t, r, steps, B) * H;
      const int64_t s = r * H;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const T vh = dhp[s + j] + dyp[o + j];
        const T vc = dcp[s + j];
        const T ig = acp[4 * o + j], fg = acp[4 * o + H + j], og = acp[4 * o + 2 * H + j], gg = acp[4 * o + 3 * H + j];
        const T cn = cnp[o + j], cr = crp[o + j];
        const T tc = tanh_sat<T>(cn);
        const T e = vc + vh * og * (T(1) - tc * tc);
        T u = T(1), b = T(0);
        if constexpr (GATED) {
          const T a = ap[o + j];
          u = a > T(0) ? T(1) : T(0);
          const T sg = sigmoid<T>(a);
          const T slope = sg * (T(1) - sg) * u;  // open pairs only (cells.py: switch)
          const T k_ah = (og * tc - hrp[o + j]) * slope;
          const T k_ac = (cn - cr) * slope;
          const T ex = ep[o + j] + d_soft * (sg * (T(1) - sg));  // every pair: the rate loss's sigmoid sum
          dap[o + j] = ex + vh * k_ah + vc * k_ac;
          b = (T(1) - u) * vh + w[j] * (vh * k_ah + vc * k_ac + ex);
        }
        const T eu = e * u;
        dg[4 * o + j] = eu * gg * ig * (T(1) - ig);
        dg[4 * o + H + j] = eu * cr * fg * (T(1) - fg);
        dg[4 * o + 2 * H + j] = eu * ig * (T(1) - gg * gg);
        dg[4 * o + 3 * H + j] = vh * u * tc * og * (T(1) - og);
        bs[s + j] = b;
        dcp[s + j] = eu * fg + (T(1) - u) * vc;
      }
    }
    const T* alive_t = alive && resets[t] ? in.alive.data_ptr<T>() + t * B : nullptr;
    to_previous_step<T>(dh, dg + t * B * 4 * H, steps, w_hh, bs, alive_t, G, B, H);
    if (alive_t) apply_reset<T>(dc.data_ptr<T>(), alive_t, G, B, H);
  }
  return {dgates.transpose(0, 1), dh, dc, GATED ? in.da.transpose(0, 1) : in.da};
}

template <typename T>
std::vector<Tensor> weight_grads_impl(Tensor dgates, Tensor inputs) {
  dgates = group_major(dgates);  // (G, T, B, W): each layer's rows together
  const bool shared = inputs.dim() == 3;
  inputs = shared ? inputs.contiguous() : group_major(inputs);
  const int64_t G = dgates.size(0), rows = dgates.size(1) * dgates.size(2), W = dgates.size(3);
  const int64_t n = inputs.size(-1);
  auto opts = dgates.options();
  Tensor dw = at::empty({G, W, n}, opts), db = at::zeros({G, W}, opts), scratch = at::empty({n, W}, opts);
  const T* dp = dgates.data_ptr<T>();
  const T* ip = inputs.data_ptr<T>();
  T* dwp = dw.data_ptr<T>();
  T* dbp = db.data_ptr<T>();
  T* sp = scratch.data_ptr<T>();
  for (int64_t g = 0; g < G; ++g) {
    const T* d = dp + g * rows * W;
    // dW^T (n, W) = inputs^T (n, rows) @ dgates (rows, W): vectors run along W, the wide side.
    SmallGemm<T>::template run<true>(ip + (shared ? 0 : g * rows * n), n, d, W, sp, W, n, rows, W);
    transpose_into<T>(sp, dwp + g * W * n, n, W);
    T* __restrict__ b = dbp + g * W;
    for (int64_t row = 0; row < rows; ++row) {
      const T* __restrict__ dr = d + row * W;
#pragma omp simd
      for (int64_t j = 0; j < W; ++j) b[j] += dr[j];
    }
  }
  return {dw, db};
}

}  // namespace

std::vector<Tensor> weight_grads(Tensor dgates, Tensor inputs) {
  DISPATCH(dgates, weight_grads_impl<scalar>(dgates, inputs))
}

std::vector<Tensor> single_state_backward(Tensor dy, Tensor dh, Tensor k_h, OptTensor carry, OptTensor extra,
                                          Tensor w_hh, int64_t n_gates) {
  DISPATCH(dy, single_state_backward_impl<scalar>(dy, dh, k_h, carry, extra, w_hh, n_gates))
}

std::vector<Tensor> gru_cell_backward(Tensor dy, Tensor dh, OptTensor da_ext, Tensor h_read, Tensor rz, Tensor n,
                                 Tensor ghn, OptTensor preact, OptTensor gate_w, OptTensor alive,
                                 std::vector<bool> resets, Tensor w_hh, OptTensor d_soft) {
  if (opt(preact)) {
    DISPATCH(dy, gru_backward_impl<scalar, true>(dy, dh, da_ext, h_read, rz, n, ghn, preact, gate_w, alive, resets,
                                                 w_hh, d_soft))
  }
  DISPATCH(dy, gru_backward_impl<scalar, false>(dy, dh, da_ext, h_read, rz, n, ghn, preact, gate_w, alive, resets,
                                                w_hh, d_soft))
}

std::vector<Tensor> lstm_cell_backward(Tensor dy, Tensor dh, Tensor dc, OptTensor da_ext, Tensor h_read, Tensor c_read,
                                  Tensor act, Tensor cand, OptTensor preact, OptTensor gate_w, OptTensor alive,
                                  std::vector<bool> resets, Tensor w_hh, OptTensor d_soft) {
  if (opt(preact)) {
    DISPATCH(dy, lstm_backward_impl<scalar, true>(dy, dh, dc, da_ext, h_read, c_read, act, cand, preact, gate_w,
                                                  alive, resets, w_hh, d_soft))
  }
  DISPATCH(dy, lstm_backward_impl<scalar, false>(dy, dh, dc, da_ext, h_read, c_read, act, cand, preact, gate_w,
                                                 alive, resets, w_hh, d_soft))
}

}  // namespace sparsernn
