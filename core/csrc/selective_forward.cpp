// Forward loop of a selective-update (suRNN) GRU, LSTM or Elman layer that skips closed neurons, on a CPU
// (sparsernn/core/fused_selective.py calls it; the reference is sparsernn/core/reference.py; the cells'
// equations are selective_cells.h).
//
// Per step and layer: the switches first (a = gate_x + w * h for the event gate, the precomputed
// schedule for the rhythm), then the candidates of the open (sample, neuron) pairs only, organised by
// neuron (selective_products.h): each open neuron's K W_hh rows and K W_ih rows are read once
// for all the samples that open it. A closed pair keeps its state (h, and the LSTM's c) exactly and costs
// nothing but its switch. A step whose open share is above `dense_above` runs as two dense GEMMs instead
// (then the gathered products would not pay: ATen's GEMMs, for large layers only,
// sparsernn/core/fused_selective.py); the step's mode is recorded for the backward pass.
//
// Shapes: x (T, B, I); h0, c0 (LSTM) (G, B, H); per layer W_ih (KH, I), b_ih (KH), W_hh (KH, H), b_hh (KH);
// gate_x (T, G, B, H); gate_w (G, 1, H) or absent; alive (T, 1, B, 1) or absent. Sequences are
// time-major (T, G, B, .).
// Returns y (T, G, B, H), h_T, c_T (LSTM; else empty), a (T, G, B, H), the candidates computed per layer
// (G,), and with `save`: h_read and c_read (the states entering each step, after its reset; c_read empty
// but for the LSTM), the kept values (T, G, B, S H) and each step's mode (T, G; 1: dense).
#include "fused_cpu.h"
#include "selective_cells.h"
#include "selective_products.h"

namespace sparsernn {
namespace {

inline std::vector<Tensor> contiguous_each(const std::vector<Tensor>& ts) {
  std::vector<Tensor> out;
  for (const Tensor& t : ts) out.push_back(t.contiguous());
  return out;
}

template <typename T, typename Cell>
std::vector<Tensor> selective_forward_impl(Tensor x, Tensor h0, OptTensor c0_o, std::vector<Tensor> w_ih,
                                           std::vector<Tensor> b_ih, std::vector<Tensor> w_hh, std::vector<Tensor> b_hh,
                                           OptTensor alive_o, const std::vector<bool>& resets, Tensor gate_x,
                                           OptTensor gate_w_o, bool save, double dense_above) {
  constexpr int K = Cell::K, S = Cell::S;
  constexpr bool kC = Cell::kHasC;
  x = x.contiguous();
  gate_x = gate_x.contiguous();
  w_ih = contiguous_each(w_ih); b_ih = contiguous_each(b_ih);
  w_hh = contiguous_each(w_hh); b_hh = contiguous_each(b_hh);
  const Tensor alive = contiguous_or_none(alive_o), gate_w = contiguous_or_none(gate_w_o);
  const int64_t steps = x.size(0), B = x.size(1), I = x.size(2), G = h0.size(0), H = h0.size(2);
  TORCH_CHECK(!kC || opt(c0_o), "sparsernn selective loops: the LSTM needs its cell state c");
  const auto opts = h0.options();
  Tensor y = at::empty({steps, G, B, H}, opts);
  Tensor a = at::empty({steps, G, B, H}, opts);
  // The states entering each step (after its reset) and each pair's kept values: kept for the
  // backward pass with save, else one step's worth of scratch.
  Tensor h_read = at::empty({save ? steps : 1, G, B, H}, opts);
  Tensor c_read = kC ? at::empty({save ? steps : 1, G, B, H}, opts) : at::empty({0}, opts);
  Tensor c = kC ? c0_o->contiguous().clone() : at::empty({0}, opts);  // the cell state, updated in place
  Tensor vals = at::empty({save ? steps : 1, G, B, S * H}, opts);
  Tensor dense = at::zeros({steps, G}, h0.options().dtype(at::kByte));
  Tensor h = h0.contiguous();
  const T* xp = x.data_ptr<T>();
  const T* gxp = gate_x.data_ptr<T>();
  const T* gwp = gate_w.defined() ? gate_w.data_ptr<T>() : nullptr;
  T* yp = y.data_ptr<T>();
  T* ap = a.data_ptr<T>();
  uint8_t* densep = dense.data_ptr<uint8_t>();
  std::vector<int64_t> start(H + 1), cursor(H);
  const std::vector<T> zeros(H, T(0));
  std::vector<int32_t> samples(B * H);
  std::vector<const T*> hvecs(B), xvecs(B);
  std::vector<T> dots_h(K * B), dots_x(K * B);
  // per open pair: K input-side and K recurrent-side pre-activations, the old h and c, the new h and c
  std::vector<T> pre((2 * K + 4) * B * H);
  std::vector<int64_t> computed(G, 0);  // candidates computed, per layer
  for (int64_t t = 0; t < steps; ++t) {
    const int64_t slot = save ? t : 0;
    const T* alive_t = alive.defined() && resets[t] ? alive.data_ptr<T>() + t * B : nullptr;
    const T* x_t = xp + t * B * I;
    for (int64_t g = 0; g < G; ++g) {
      const T* prev = t == 0 ? h.data_ptr<T>() + g * B * H : yp + ((t - 1) * G + g) * B * H;
      T* hr = h_read.data_ptr<T>() + (slot * G + g) * B * H;
      T* cr = kC ? c_read.data_ptr<T>() + (slot * G + g) * B * H : nullptr;
      T* cg = kC ? c.data_ptr<T>() + g * B * H : nullptr;
      T* yt = yp + (t * G + g) * B * H;
      T* at_ = ap + (t * G + g) * B * H;
      T* vt = vals.data_ptr<T>() + (slot * G + g) * B * S * H;
      const T* gx_t = gxp + (t * G + g) * B * H;
      const T* gw = gwp ? gwp + g * H : zeros.data();  // the rhythm gate: w = 0
      for (int64_t b = 0; b < B; ++b) {
        const T keep = alive_t ? alive_t[b] : T(1);
        const T* pb = prev + b * H;
        T* hb = hr + b * H;
        T* ab = at_ + b * H;
        const T* gb = gx_t + b * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const T hv = pb[j] * keep;
          hb[j] = hv;
          ab[j] = gb[j] + gw[j] * hv;
        }
        if (kC) {
          T* cb = cg + b * H;
          T* crb = cr + b * H;
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) crb[j] = cb[j] = cb[j] * keep;
        }
      }
      std::copy(hr, hr + B * H, yt);  // closed pairs keep their state exactly (c: kept in place)
      const T* wih = w_ih[g].data_ptr<T>();
      const T* bih = b_ih[g].data_ptr<T>();
      const T* whh = w_hh[g].data_ptr<T>();
      const T* bhh = b_hh[g].data_ptr<T>();
      const int64_t n_open = selective::open_pairs_by_neuron<T>(at_, B, H, start.data(), samples.data(), cursor);
      if (n_open == 0) continue;
      if (double(n_open) > dense_above * double(B * H)) {  // a dense step: two GEMMs, then every unit
        densep[t * G + g] = 1;
        computed[g] += B * H;
        const Tensor gxs = at::addmm(b_ih[g], x.select(0, t), w_ih[g].t());
        const Tensor ghs = at::addmm(b_hh[g], h_read.select(0, slot).select(0, g), w_hh[g].t());
        const T* gxd = gxs.data_ptr<T>();
        const T* ghd = ghs.data_ptr<T>();
        for (int64_t b = 0; b < B; ++b) {
          const T* __restrict__ gxb = gxd + b * K * H;
          const T* __restrict__ ghb = ghd + b * K * H;
          const T* __restrict__ ab = at_ + b * H;
          const T* __restrict__ hb = hr + b * H;
          const T* __restrict__ crb = kC ? cr + b * H : hb;
          T* __restrict__ cb = kC ? cg + b * H : nullptr;
          T* __restrict__ yb = yt + b * H;
          T* __restrict__ vb = vt + b * S * H;  // dense steps keep (B, [S values of H]) rows
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) {
            T cn = T(0);
            const T nv = Cell::template unit<T>(gxb + j, ghb + j, H, hb[j], crb[j], cn, vb + j, H);
            const bool open = ab[j] > T(0);
            yb[j] = open ? nv : hb[j];
            if (kC) cb[j] = open ? cn : crb[j];
          }
        }
        continue;
      }
      computed[g] += n_open;
      // 1. the open pairs' pre-activations, by neuron, in the pairs' (CSR) order
      T* __restrict__ pre_x = pre.data();                 // K arrays of n_open
      T* __restrict__ pre_h = pre_x + K * n_open;          // K arrays of n_open
      T* __restrict__ h_old = pre_h + K * n_open;
      T* __restrict__ c_old = h_old + n_open;
      T* __restrict__ fresh = c_old + n_open;
      T* __restrict__ fresh_c = fresh + n_open;
      for (int64_t j = 0; j < H; ++j) {
        const int64_t p0 = start[j], nb = start[j + 1] - p0;
        if (nb == 0) continue;
        const int32_t* sb = samples.data() + p0;
        for (int64_t q = 0; q < nb; ++q) {
          hvecs[q] = hr + int64_t(sb[q]) * H;
          xvecs[q] = x_t + int64_t(sb[q]) * I;
        }
        const T* hh_rows[K];
        const T* ih_rows[K];
        for (int k = 0; k < K; ++k) {
          hh_rows[k] = whh + (k * H + j) * H;
          ih_rows[k] = wih + (k * H + j) * I;
        }
        selective::rows_dots<T, K>(hh_rows, hvecs.data(), nb, H, dots_h.data());
        selective::rows_dots<T, K>(ih_rows, xvecs.data(), nb, I, dots_x.data());
        for (int64_t q = 0; q < nb; ++q) {
          const int64_t o = int64_t(sb[q]) * H + j;
          for (int k = 0; k < K; ++k) {
            pre_x[k * n_open + p0 + q] = dots_x[K * q + k] + bih[k * H + j];
            pre_h[k * n_open + p0 + q] = dots_h[K * q + k] + bhh[k * H + j];
          }
          h_old[p0 + q] = hr[o];
          c_old[p0 + q] = kC ? cr[o] : T(0);
        }
      }
      // 2. the units, vectorised over the pairs; sparse steps keep [S values], n_open each, in pair order
#pragma omp simd
      for (int64_t p = 0; p < n_open; ++p) {
        T cn = T(0);
        fresh[p] = Cell::template unit<T>(pre_x + p, pre_h + p, n_open, h_old[p], c_old[p], cn, vt + p, n_open);
        fresh_c[p] = cn;
      }
      // 3. the new states into place
      for (int64_t j = 0; j < H; ++j)
        for (int64_t p = start[j]; p < start[j + 1]; ++p) {
          const int64_t o = int64_t(samples[p]) * H + j;
          yt[o] = fresh[p];
          if (kC) cg[o] = fresh_c[p];
        }
    }
  }
  Tensor h_last = steps > 0 ? y.select(0, steps - 1).clone() : h.clone();
  Tensor counts = at::empty({G}, opts.dtype(at::kDouble));
  for (int64_t g = 0; g < G; ++g) counts.data_ptr<double>()[g] = double(computed[g]);
  std::vector<Tensor> out{y, h_last, c, a, counts};
  if (save) {
    out.push_back(h_read);
    out.push_back(c_read);
    out.push_back(vals);
    out.push_back(dense);
  }
  return out;
}

}  // namespace

std::vector<Tensor> selective_forward(std::string cell, Tensor x, Tensor h0, OptTensor c0, std::vector<Tensor> w_ih,
                                      std::vector<Tensor> b_ih, std::vector<Tensor> w_hh, std::vector<Tensor> b_hh,
                                      OptTensor alive, std::vector<bool> resets, Tensor gate_x, OptTensor gate_w,
                                      bool save, double dense_above) {
  SELECTIVE_CELL_DISPATCH(cell, h0, selective_forward_impl, x, h0, c0, w_ih, b_ih, w_hh, b_hh, alive, resets, gate_x,
                          gate_w, save, dense_above)
}

}  // namespace sparsernn
