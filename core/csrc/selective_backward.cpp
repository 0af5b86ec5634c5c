// Backward loop of the selective-update GRU of selective_forward.cpp: the same open pairs, by neuron.
//
// Per step (last to first) and layer, from v = dL/dh_t (the carried gradient plus dy_t) and e (the
// gradient that reaches the switches' pre-activations from outside, e.g. the update-rate loss):
// - a closed pair passes v to the previous state unchanged (its candidate was never computed, and its
//   switch's straight-through gradient is 0: sparsernn/core/cells.py `switch`), plus w * e through the
//   event gate's w * h term; its da is e;
// - an open pair gets the GRU's local factors and the switch's sigmoid'(a) (new - old) term, then its
//   three gate-row gradients are spread, by neuron, into the previous state's gradient (W_hh rows),
//   the input's (W_ih rows), and the weight gradients (outer products with h_read and x):
//   selective_products.h's rows_scatter_outer.
// A step that ran dense in the forward pass runs dense here too: its gate gradients for every pair (0 at
// closed ones), the previous state's gradient by a GEMM, and the weight, bias and input
// gradients of all dense steps as one GEMM each at the end.
// Returns dx (T, B, I; empty unless asked), dh0 (G, B, H), dW_ih (G, 3H, I), db_ih (G, 3H),
// dW_hh (G, 3H, H), db_hh (G, 3H), da (T, G, B, H).
#include "fused_cpu.h"
#include "selective_products.h"

namespace sparsernn {
namespace {

template <typename T>
std::vector<Tensor> gru_selective_backward_impl(Tensor dy, Tensor dh_last, OptTensor da_ext_o, Tensor x, Tensor h_read,
                                                Tensor vals, Tensor a, Tensor dense, OptTensor gate_w_o,
                                                OptTensor alive_o, const std::vector<bool>& resets,
                                                std::vector<Tensor> w_ih, std::vector<Tensor> w_hh, bool need_dx) {
  dy = dy.contiguous();
  x = x.contiguous();
  const Tensor da_ext = contiguous_or_none(da_ext_o), gate_w = contiguous_or_none(gate_w_o);
  const Tensor alive = contiguous_or_none(alive_o);
  for (auto& w : w_ih) w = w.contiguous();
  for (auto& w : w_hh) w = w.contiguous();
  const int64_t steps = dy.size(0), G = dy.size(1), B = dy.size(2), H = dy.size(3), I = x.size(2);
  const auto opts = dy.options();
  Tensor dx = need_dx ? at::zeros({steps, B, I}, opts) : at::empty({0}, opts);
  Tensor d_w_ih = at::zeros({G, 3 * H, I}, opts), d_b_ih = at::zeros({G, 3 * H}, opts);
  Tensor d_w_hh = at::zeros({G, 3 * H, H}, opts), d_b_hh = at::zeros({G, 3 * H}, opts);
  Tensor da = at::empty({steps, G, B, H}, opts);
  Tensor dh = dh_last.contiguous().clone();      // dL/dh_t, carried: (G, B, H)
  Tensor dprev = at::empty({G, B, H}, opts);     // dL/d h_read_t
  const T* dyp = dy.data_ptr<T>();
  const T* ep = da_ext.defined() ? da_ext.data_ptr<T>() : nullptr;
  const T* gwp = gate_w.defined() ? gate_w.data_ptr<T>() : nullptr;
  const T* xp = x.data_ptr<T>();
  const uint8_t* densep = dense.data_ptr<uint8_t>();
  T* dap = da.data_ptr<T>();
  T* dxp = need_dx ? dx.data_ptr<T>() : nullptr;
  std::vector<int64_t> start(H + 1), cursor(H);
  const std::vector<T> zeros(B * H, T(0));
  // dense steps, per layer: their times and gate gradients (rows of B), for one GEMM each at the end
  std::vector<std::vector<int64_t>> dense_steps(G);
  std::vector<std::vector<T>> dgx_all(G), dgh_all(G);
  std::vector<int32_t> samples(B * H);
  std::vector<const T*> hvecs(B), xvecs(B);
  std::vector<T*> dhvecs(B), dxvecs(B);
  std::vector<T> coef_h(3 * B * H), coef_x(3 * B * H), pair(4 * B * H);  // per open pair
  for (int64_t t = steps - 1; t >= 0; --t) {
    const T* alive_t = alive.defined() && resets[t] ? alive.data_ptr<T>() + t * B : nullptr;
    const T* x_t = xp + t * B * I;
    T* dx_t = need_dx ? dxp + t * B * I : nullptr;
    for (int64_t g = 0; g < G; ++g) {
      const int64_t base = (t * G + g) * B * H;
      const T* at_ = a.data_ptr<T>() + base;
      const T* hr = h_read.data_ptr<T>() + base;
      const T* vt = vals.data_ptr<T>() + base * 4;
      const T* dyt = dyp + base;
      const T* et = ep ? ep + base : zeros.data();  // absent: zeros (no conditional reads in the loops)
      const T* gw = gwp ? gwp + g * H : zeros.data();
      T* dat = dap + base;
      T* dhg = dh.data_ptr<T>() + g * B * H;
      T* dpg = dprev.data_ptr<T>() + g * B * H;
      const bool dense_step = densep[t * G + g] != 0;
      // Every pair as if closed: v straight to the previous state, plus w * e through the event gate.
      for (int64_t b = 0; b < B; ++b) {
        const T* __restrict__ dhb = dhg + b * H;
        const T* __restrict__ dyb = dyt + b * H;
        T* __restrict__ dab = dat + b * H;
        T* __restrict__ dpb = dpg + b * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const T e = et[b * H + j];
          dab[j] = e;
          dpb[j] = dhb[j] + dyb[j] + gw[j] * e;
        }
      }
      if (dense_step) {  // the forward pass ran this step dense: (B, [r | z | n | gh_n]) rows, every unit
        const int64_t d = int64_t(dense_steps[g].size());
        dense_steps[g].push_back(t);
        dgx_all[g].resize((d + 1) * B * 3 * H);
        dgh_all[g].resize((d + 1) * B * 3 * H);
        T* __restrict__ dgxp = dgx_all[g].data() + d * B * 3 * H;
        T* __restrict__ dghp = dgh_all[g].data() + d * B * 3 * H;
        for (int64_t b = 0; b < B; ++b) {
          const T* __restrict__ vb = vt + b * 4 * H;
          const T* __restrict__ ab = at_ + b * H;
          const T* __restrict__ hb = hr + b * H;
          const T* __restrict__ dhb = dhg + b * H;
          const T* __restrict__ dyb = dyt + b * H;
          T* __restrict__ dab = dat + b * H;
          T* __restrict__ dpb = dpg + b * H;
          T* __restrict__ gx = dgxp + b * 3 * H;
          T* __restrict__ gh = dghp + b * 3 * H;
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) {
            const T av = ab[j];
            const T u = av > T(0) ? T(1) : T(0);
            const T v = (dhb[j] + dyb[j]) * u;  // closed pairs: no gate gradients, no switch gradient
            const T rr = vb[j], zz = vb[H + j], nn = vb[2 * H + j], gn = vb[3 * H + j], h0 = hb[j];
            const T k_n = (T(1) - zz) * (T(1) - nn * nn);
            const T sg = sigmoid<T>(av);
            const T k_a = (nn + zz * (h0 - nn) - h0) * sg * (T(1) - sg);
            const T w = gw[j];
            dab[j] += v * k_a;
            dpb[j] += v * (zz - T(1) + w * k_a);  // an open pair's direct path is z, not 1
            gx[j] = gh[j] = v * k_n * gn * rr * (T(1) - rr);
            gx[H + j] = gh[H + j] = v * (h0 - nn) * zz * (T(1) - zz);
            gx[2 * H + j] = v * k_n;
            gh[2 * H + j] = v * k_n * rr;
          }
        }
        // the previous state's gradient now; the weight and input gradients of all dense steps at the end
        dprev.select(0, g).addmm_(at::from_blob(dghp, {B, 3 * H}, opts), w_hh[g]);
      } else {
        const int64_t n_open = selective::open_pairs_by_neuron<T>(at_, B, H, start.data(), samples.data(), cursor);
        // the sparse step's saved values, [r | z | n | gh_n] in pair order (selective_forward.cpp)
        const T* __restrict__ s_r = vt;
        const T* __restrict__ s_z = vt + n_open;
        const T* __restrict__ s_n = vt + 2 * n_open;
        const T* __restrict__ s_g = vt + 3 * n_open;
        T* __restrict__ pv = pair.data();        // v, then the gate gradients
        T* __restrict__ pa = pv + n_open;        // a, then da
        T* __restrict__ ph = pa + n_open;        // h_old
        T* __restrict__ pw = ph + n_open;        // w (event gate), then the direct path's change
        for (int64_t j = 0; j < H; ++j)
          for (int64_t p = start[j]; p < start[j + 1]; ++p) {
            const int64_t o = int64_t(samples[p]) * H + j;
            pv[p] = dhg[o] + dyt[o];
            pa[p] = at_[o];
            ph[p] = hr[o];
            pw[p] = gw[j];
          }
        T* __restrict__ ch = coef_h.data();
        T* __restrict__ cx = coef_x.data();
#pragma omp simd
        for (int64_t p = 0; p < n_open; ++p) {
          const T v = pv[p], rr = s_r[p], zz = s_z[p], nn = s_n[p], gn = s_g[p], h0 = ph[p];
          const T k_n = (T(1) - zz) * (T(1) - nn * nn);
          const T sg = sigmoid<T>(pa[p]);
          const T k_a = (nn + zz * (h0 - nn) - h0) * sg * (T(1) - sg);
          const T gr = v * k_n * gn * rr * (T(1) - rr);
          const T gz = v * (h0 - nn) * zz * (T(1) - zz);
          const T gnx = v * k_n;
          ch[3 * p] = cx[3 * p] = gr;
          ch[3 * p + 1] = cx[3 * p + 1] = gz;
          ch[3 * p + 2] = gnx * rr;
          cx[3 * p + 2] = gnx;
          pa[p] = v * k_a;                        // added to da
          pw[p] = v * (zz - T(1) + pw[p] * k_a);  // added to the previous state's gradient
        }
        const T* whh = w_hh[g].data_ptr<T>();
        const T* wih = w_ih[g].data_ptr<T>();
        T* dwhh = d_w_hh.data_ptr<T>() + g * 3 * H * H;
        T* dwih = d_w_ih.data_ptr<T>() + g * 3 * H * I;
        T* dbhh = d_b_hh.data_ptr<T>() + g * 3 * H;
        T* dbih = d_b_ih.data_ptr<T>() + g * 3 * H;
        for (int64_t j = 0; j < H; ++j) {
          const int64_t p0 = start[j], nb = start[j + 1] - p0;
          if (nb == 0) continue;
          const int32_t* sb = samples.data() + p0;
          T sum_r = T(0), sum_z = T(0), sum_nx = T(0), sum_nh = T(0);
          for (int64_t q = 0; q < nb; ++q) {
            const int64_t p = p0 + q, b = sb[q], o = b * H + j;
            dat[o] += pa[p];
            dpg[o] += pw[p];
            sum_r += ch[3 * p];
            sum_z += ch[3 * p + 1];
            sum_nh += ch[3 * p + 2];
            sum_nx += cx[3 * p + 2];
            hvecs[q] = hr + b * H;
            dhvecs[q] = dpg + b * H;
            xvecs[q] = x_t + b * I;
            dxvecs[q] = need_dx ? dx_t + b * I : nullptr;
          }
          const T* hh_rows[3] = {whh + j * H, whh + (H + j) * H, whh + (2 * H + j) * H};
          T* dhh_rows[3] = {dwhh + j * H, dwhh + (H + j) * H, dwhh + (2 * H + j) * H};
          selective::rows_scatter_outer<T, 3>(hh_rows, dhh_rows, ch + 3 * p0, hvecs.data(), dhvecs.data(), nb, H);
          const T* ih_rows[3] = {wih + j * I, wih + (H + j) * I, wih + (2 * H + j) * I};
          T* dih_rows[3] = {dwih + j * I, dwih + (H + j) * I, dwih + (2 * H + j) * I};
          selective::rows_scatter_outer<T, 3>(ih_rows, dih_rows, cx + 3 * p0, xvecs.data(),
                                             need_dx ? dxvecs.data() : nullptr, nb, I);
          dbhh[j] += sum_r; dbhh[H + j] += sum_z; dbhh[2 * H + j] += sum_nh;
          dbih[j] += sum_r; dbih[H + j] += sum_z; dbih[2 * H + j] += sum_nx;
        }
      }
      // dL/dh_{t-1}: through the reset of step t
      for (int64_t b = 0; b < B; ++b) {
        const T keep = alive_t ? alive_t[b] : T(1);
        for (int64_t j = 0; j < H; ++j) dhg[b * H + j] = dpg[b * H + j] * keep;
      }
    }
  }
  for (int64_t g = 0; g < G; ++g) {  // the dense steps' weight, bias and input gradients: one GEMM each
    const int64_t nd = int64_t(dense_steps[g].size());
    if (nd == 0) continue;
    const auto idx = at::tensor(dense_steps[g], opts.dtype(at::kLong));
    const Tensor dgx_d = at::from_blob(dgx_all[g].data(), {nd * B, 3 * H}, opts);
    const Tensor dgh_d = at::from_blob(dgh_all[g].data(), {nd * B, 3 * H}, opts);
    const Tensor h_d = h_read.select(1, g).index_select(0, idx).reshape({nd * B, H});
    const Tensor x_d = x.index_select(0, idx).reshape({nd * B, I});
    d_w_hh.select(0, g).addmm_(dgh_d.t(), h_d);
    d_b_hh.select(0, g).add_(dgh_d.sum(0));
    d_w_ih.select(0, g).addmm_(dgx_d.t(), x_d);
    d_b_ih.select(0, g).add_(dgx_d.sum(0));
    if (need_dx) dx.index_add_(0, idx, at::mm(dgx_d, w_ih[g]).view({nd, B, I}));
  }
  return {dx, dh, d_w_ih, d_b_ih, d_w_hh, d_b_hh, da};
}

}  // namespace

std::vector<Tensor> gru_selective_backward(Tensor dy, Tensor dh, OptTensor da_ext, Tensor x, Tensor h_read, Tensor vals,
                                           Tensor a, Tensor dense, OptTensor gate_w, OptTensor alive,
                                           std::vector<bool> resets, std::vector<Tensor> w_ih, std::vector<Tensor> w_hh,
                                           bool need_dx) {
  DISPATCH(dy, gru_selective_backward_impl<scalar>(dy, dh, da_ext, x, h_read, vals, a, dense, gate_w, alive, resets,
                                                   w_ih, w_hh, need_dx))
}

}  // namespace sparsernn
