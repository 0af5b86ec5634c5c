// Backward loop of the selective-update GRU, LSTM or Elman layer of selective_forward.cpp: the same open
// pairs, by neuron; the cells' local gradients are selective_cells.h.
//
// Per step (last to first) and layer, from v = dL/dh_t (the carried gradient plus dy_t), vc = dL/dc_t (the
// LSTM's carried cell-state gradient) and e (the gradient that reaches the switches' pre-activations from
// outside, e.g. the update-rate loss):
// - a closed pair passes v (and vc) to the previous state unchanged (its candidate was never computed, and
//   its switch's straight-through gradient is 0: sparsernn/core/cells.py `switch`), plus w * e through the
//   event gate's w * h term; its da is e;
// - an open pair gets the cell's local gradients and the switch's sigmoid'(a) (new - old) term, then its
//   K gate-row gradients are spread, by neuron, into the previous state's gradient (W_hh rows),
//   the input's (W_ih rows), and the weight gradients (outer products with h_read and x):
//   selective_products.h's rows_scatter_outer.
// A step that ran dense in the forward pass runs dense here too: its gate gradients for every pair (0 at
// closed ones), the previous state's gradient by a GEMM, and the weight, bias and input
// gradients of all dense steps as one GEMM each at the end.
// Returns dx (T, B, I; empty unless asked), dh0 (G, B, H), dc0 (G, B, H; empty but for the LSTM),
// dW_ih (G, KH, I), db_ih (G, KH), dW_hh (G, KH, H), db_hh (G, KH), da (T, G, B, H).
#include "fused_cpu.h"
#include "selective_cells.h"
#include "selective_products.h"

namespace sparsernn {
namespace {

template <typename T, typename Cell>
std::vector<Tensor> selective_backward_impl(Tensor dy, Tensor dh_last, OptTensor dc_last_o, OptTensor da_ext_o,
                                            Tensor x, Tensor h_read, OptTensor c_read_o, Tensor vals, Tensor a,
                                            Tensor dense, OptTensor gate_w_o, OptTensor alive_o,
                                            const std::vector<bool>& resets, std::vector<Tensor> w_ih,
                                            std::vector<Tensor> w_hh, bool need_dx) {
  constexpr int K = Cell::K, S = Cell::S;
  constexpr bool kC = Cell::kHasC, kSame = Cell::kSameCoef;
  dy = dy.contiguous();
  x = x.contiguous();
  const Tensor da_ext = contiguous_or_none(da_ext_o), gate_w = contiguous_or_none(gate_w_o);
  const Tensor alive = contiguous_or_none(alive_o), c_read = contiguous_or_none(c_read_o);
  for (auto& w : w_ih) w = w.contiguous();
  for (auto& w : w_hh) w = w.contiguous();
  const int64_t steps = dy.size(0), G = dy.size(1), B = dy.size(2), H = dy.size(3), I = x.size(2);
  TORCH_CHECK(!kC || (c_read.defined() && opt(dc_last_o)), "sparsernn selective loops: the LSTM needs c and dc");
  const auto opts = dy.options();
  Tensor dx = need_dx ? at::zeros({steps, B, I}, opts) : at::empty({0}, opts);
  Tensor d_w_ih = at::zeros({G, K * H, I}, opts), d_b_ih = at::zeros({G, K * H}, opts);
  Tensor d_w_hh = at::zeros({G, K * H, H}, opts), d_b_hh = at::zeros({G, K * H}, opts);
  Tensor da = at::empty({steps, G, B, H}, opts);
  Tensor dh = dh_last.contiguous().clone();      // dL/dh_t, carried: (G, B, H)
  Tensor dc = kC ? dc_last_o->contiguous().clone() : at::empty({0}, opts);  // dL/dc_t, carried, updated in place
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
  // (kSameCoef: the W_hh rows' gradients are the W_ih rows', kept once)
  std::vector<std::vector<int64_t>> dense_steps(G);
  std::vector<std::vector<T>> dgx_all(G), dgh_all(G);
  std::vector<int32_t> samples(B * H);
  std::vector<const T*> hvecs(B), xvecs(B);
  std::vector<T*> dhvecs(B), dxvecs(B);
  std::vector<T> coef_x(K * B * H), coef_h(kSame ? 0 : K * B * H), pair(6 * B * H);  // per open pair
  for (int64_t t = steps - 1; t >= 0; --t) {
    const T* alive_t = alive.defined() && resets[t] ? alive.data_ptr<T>() + t * B : nullptr;
    const T* x_t = xp + t * B * I;
    T* dx_t = need_dx ? dxp + t * B * I : nullptr;
    for (int64_t g = 0; g < G; ++g) {
      const int64_t base = (t * G + g) * B * H;
      const T* at_ = a.data_ptr<T>() + base;
      const T* hr = h_read.data_ptr<T>() + base;
      const T* cr = kC ? c_read.data_ptr<T>() + base : hr;  // read only by the LSTM
      const T* vt = vals.data_ptr<T>() + base * S;
      const T* dyt = dyp + base;
      const T* et = ep ? ep + base : zeros.data();  // absent: zeros (no conditional reads in the loops)
      const T* gw = gwp ? gwp + g * H : zeros.data();
      T* dat = dap + base;
      T* dhg = dh.data_ptr<T>() + g * B * H;
      T* dcg = kC ? dc.data_ptr<T>() + g * B * H : nullptr;  // dL/dc_t in, dL/dc_read_t out (in place)
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
      if (dense_step) {  // the forward pass ran this step dense: (B, [S values of H]) rows, every unit
        const int64_t d = int64_t(dense_steps[g].size());
        dense_steps[g].push_back(t);
        dgx_all[g].resize((d + 1) * B * K * H);
        if (!kSame) dgh_all[g].resize((d + 1) * B * K * H);
        T* dgxp = dgx_all[g].data() + d * B * K * H;
        T* dghp = kSame ? dgxp : dgh_all[g].data() + d * B * K * H;
        for (int64_t b = 0; b < B; ++b) {
          const T* __restrict__ vb = vt + b * S * H;
          const T* __restrict__ ab = at_ + b * H;
          const T* __restrict__ hb = hr + b * H;
          const T* __restrict__ crb = cr + b * H;
          const T* __restrict__ dhb = dhg + b * H;
          const T* __restrict__ dyb = dyt + b * H;
          T* __restrict__ dcb = kC ? dcg + b * H : nullptr;
          T* __restrict__ dab = dat + b * H;
          T* __restrict__ dpb = dpg + b * H;
          T* __restrict__ gx = dgxp + b * K * H;
          T* __restrict__ gh = kSame ? nullptr : dghp + b * K * H;
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) {
            const T av = ab[j];
            const T u = av > T(0) ? T(1) : T(0);
            const T v = (dhb[j] + dyb[j]) * u;  // closed pairs: no gate gradients, no switch gradient
            const T vc = kC ? dcb[j] : T(0);
            T direct = T(0), dc_old = T(0), delta = T(0);
            Cell::template grads<T>(vb + j, H, v, vc * u, hb[j], crb[j], gx + j, kSame ? gx + j : gh + j, H, direct,
                                    dc_old, delta);
            const T sg = sigmoid<T>(av);
            const T da_open = delta * sg * (T(1) - sg);
            dab[j] += da_open;
            dpb[j] += direct - v + gw[j] * da_open;  // an open pair's direct path replaces v
            if (kC) dcb[j] = u > T(0) ? dc_old : vc;
          }
        }
        // the previous state's gradient now; the weight and input gradients of all dense steps at the end
        dprev.select(0, g).addmm_(at::from_blob(dghp, {B, K * H}, opts), w_hh[g]);
      } else {
        const int64_t n_open = selective::open_pairs_by_neuron<T>(at_, B, H, start.data(), samples.data(), cursor);
        // the sparse step's kept values, [S values] in pair order (selective_forward.cpp)
        T* __restrict__ pv = pair.data();        // v
        T* __restrict__ pa = pv + n_open;        // a, then da
        T* __restrict__ ph = pa + n_open;        // h_old
        T* __restrict__ pw = ph + n_open;        // w (event gate), then the previous state's change
        T* __restrict__ pc = pw + n_open;        // c_old (LSTM)
        T* __restrict__ pvc = pc + n_open;       // vc, then dc_old (LSTM)
        for (int64_t j = 0; j < H; ++j)
          for (int64_t p = start[j]; p < start[j + 1]; ++p) {
            const int64_t o = int64_t(samples[p]) * H + j;
            pv[p] = dhg[o] + dyt[o];
            pa[p] = at_[o];
            ph[p] = hr[o];
            pw[p] = gw[j];
            if (kC) {
              pc[p] = cr[o];
              pvc[p] = dcg[o];
            }
          }
        T* cx = coef_x.data();
        T* ch = kSame ? cx : coef_h.data();  // one array when the cell's W_ih and W_hh rows share them
#pragma omp simd
        for (int64_t p = 0; p < n_open; ++p) {
          const T v = pv[p];
          T direct = T(0), dc_old = T(0), delta = T(0);
          Cell::template grads<T>(vt + p, n_open, v, kC ? pvc[p] : T(0), ph[p], kC ? pc[p] : T(0), cx + K * p,
                                  ch + K * p, 1, direct, dc_old, delta);
          const T sg = sigmoid<T>(pa[p]);
          const T da_open = delta * sg * (T(1) - sg);
          pa[p] = da_open;                          // added to da
          pw[p] = direct - v + pw[p] * da_open;     // added to the previous state's gradient
          if (kC) pvc[p] = dc_old;
        }
        const T* whh = w_hh[g].data_ptr<T>();
        const T* wih = w_ih[g].data_ptr<T>();
        T* dwhh = d_w_hh.data_ptr<T>() + g * K * H * H;
        T* dwih = d_w_ih.data_ptr<T>() + g * K * H * I;
        T* dbhh = d_b_hh.data_ptr<T>() + g * K * H;
        T* dbih = d_b_ih.data_ptr<T>() + g * K * H;
        for (int64_t j = 0; j < H; ++j) {
          const int64_t p0 = start[j], nb = start[j + 1] - p0;
          if (nb == 0) continue;
          const int32_t* sb = samples.data() + p0;
          T sum_x[K] = {}, sum_h[K] = {};
          for (int64_t q = 0; q < nb; ++q) {
            const int64_t p = p0 + q, b = sb[q], o = b * H + j;
            dat[o] += pa[p];
            dpg[o] += pw[p];
            if (kC) dcg[o] = pvc[p];
            for (int k = 0; k < K; ++k) {
              sum_x[k] += cx[K * p + k];
              sum_h[k] += ch[K * p + k];
            }
            hvecs[q] = hr + b * H;
            dhvecs[q] = dpg + b * H;
            xvecs[q] = x_t + b * I;
            dxvecs[q] = need_dx ? dx_t + b * I : nullptr;
          }
          const T* hh_rows[K];
          const T* ih_rows[K];
          T* dhh_rows[K];
          T* dih_rows[K];
          for (int k = 0; k < K; ++k) {
            hh_rows[k] = whh + (k * H + j) * H;
            dhh_rows[k] = dwhh + (k * H + j) * H;
            ih_rows[k] = wih + (k * H + j) * I;
            dih_rows[k] = dwih + (k * H + j) * I;
            dbhh[k * H + j] += sum_h[k];
            dbih[k * H + j] += sum_x[k];
          }
          selective::rows_scatter_outer<T, K>(hh_rows, dhh_rows, ch + K * p0, hvecs.data(), dhvecs.data(), nb, H);
          selective::rows_scatter_outer<T, K>(ih_rows, dih_rows, cx + K * p0, xvecs.data(),
                                              need_dx ? dxvecs.data() : nullptr, nb, I);
        }
      }
      // dL/dh_{t-1} (and dL/dc_{t-1}): through the reset of step t
      for (int64_t b = 0; b < B; ++b) {
        const T keep = alive_t ? alive_t[b] : T(1);
        for (int64_t j = 0; j < H; ++j) dhg[b * H + j] = dpg[b * H + j] * keep;
        if (kC && alive_t)
          for (int64_t j = 0; j < H; ++j) dcg[b * H + j] *= keep;
      }
    }
  }
  for (int64_t g = 0; g < G; ++g) {  // the dense steps' weight, bias and input gradients: one GEMM each
    const int64_t nd = int64_t(dense_steps[g].size());
    if (nd == 0) continue;
    const auto idx = at::tensor(dense_steps[g], opts.dtype(at::kLong));
    const Tensor dgx_d = at::from_blob(dgx_all[g].data(), {nd * B, K * H}, opts);
    const Tensor dgh_d = kSame ? dgx_d : at::from_blob(dgh_all[g].data(), {nd * B, K * H}, opts);
    const Tensor h_d = h_read.select(1, g).index_select(0, idx).reshape({nd * B, H});
    const Tensor x_d = x.index_select(0, idx).reshape({nd * B, I});
    d_w_hh.select(0, g).addmm_(dgh_d.t(), h_d);
    d_b_hh.select(0, g).add_(dgh_d.sum(0));
    d_w_ih.select(0, g).addmm_(dgx_d.t(), x_d);
    d_b_ih.select(0, g).add_(dgx_d.sum(0));
    if (need_dx) dx.index_add_(0, idx, at::mm(dgx_d, w_ih[g]).view({nd, B, I}));
  }
  return {dx, dh, dc, d_w_ih, d_b_ih, d_w_hh, d_b_hh, da};
}

}  // namespace

std::vector<Tensor> selective_backward(std::string cell, Tensor dy, Tensor dh, OptTensor dc, OptTensor da_ext, Tensor x,
                                       Tensor h_read, OptTensor c_read, Tensor vals, Tensor a, Tensor dense,
                                       OptTensor gate_w, OptTensor alive, std::vector<bool> resets,
                                       std::vector<Tensor> w_ih, std::vector<Tensor> w_hh, bool need_dx) {
  SELECTIVE_CELL_DISPATCH(cell, dy, selective_backward_impl, dy, dh, dc, da_ext, x, h_read, c_read, vals, a, dense,
                          gate_w, alive, resets, w_ih, w_hh, need_dx)
}

}  // namespace sparsernn
