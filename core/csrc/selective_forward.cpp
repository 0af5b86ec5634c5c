// Forward loop of a selective-update (suRNN) GRU that skips closed neurons, on a CPU
// (sparsernn/core/fused_selective.py calls it; the reference is sparsernn/core/reference.py).
//
// Per step and layer: the switches first (a = gate_x + w * h for the event gate, the precomputed
// schedule for the rhythm), then the candidates of the open (sample, neuron) pairs only, organised by
// neuron (selective_products.h): each open neuron's three W_hh rows and three W_ih rows are read once
// for all the samples that open it. A closed pair keeps its state exactly and costs nothing but its
// switch. A step whose open share is above `dense_above` runs as two dense GEMMs instead (then the
// gathered products would not pay: ATen's GEMMs, for large layers only, sparsernn/core/fused_selective.py);
// the step's mode is recorded for the backward pass.
//
// Shapes: x (T, B, I); h0 (G, B, H); per layer W_ih (3H, I), b_ih (3H), W_hh (3H, H), b_hh (3H);
// gate_x (T, G, B, H); gate_w (G, 1, H) or absent; alive (T, 1, B, 1) or absent. Sequences are
// time-major (T, G, B, .).
#include "fused_cpu.h"
#include "selective_products.h"

namespace sparsernn {
namespace {

inline std::vector<Tensor> contiguous_each(const std::vector<Tensor>& ts) {
  std::vector<Tensor> out;
  for (const Tensor& t : ts) out.push_back(t.contiguous());
  return out;
}

// One GRU unit from its projections (gx, gh include their biases): r, z, n, the new state; the
// step values r, z, n, gh_n are stored for the backward pass.
template <typename T>
__attribute__((always_inline)) inline T gru_unit(T gx_r, T gx_z, T gx_n, T gh_r, T gh_z, T gh_n, T h_old, T* rz_n_g, int64_t H) {
  const T rr = sigmoid<T>(gx_r + gh_r);
  const T zz = sigmoid<T>(gx_z + gh_z);
  const T nn = tanh_sat<T>(gx_n + rr * gh_n);
  rz_n_g[0] = rr;
  rz_n_g[H] = zz;
  rz_n_g[2 * H] = nn;
  rz_n_g[3 * H] = gh_n;
  return nn + zz * (h_old - nn);
}

template <typename T>
std::vector<Tensor> gru_selective_forward_impl(Tensor x, Tensor h0, std::vector<Tensor> w_ih, std::vector<Tensor> b_ih,
                                               std::vector<Tensor> w_hh, std::vector<Tensor> b_hh, OptTensor alive_o,
                                               const std::vector<bool>& resets, Tensor gate_x, OptTensor gate_w_o,
                                               bool save, double dense_above) {
  x = x.contiguous();
  gate_x = gate_x.contiguous();
  w_ih = contiguous_each(w_ih); b_ih = contiguous_each(b_ih);
  w_hh = contiguous_each(w_hh); b_hh = contiguous_each(b_hh);
  const Tensor alive = contiguous_or_none(alive_o), gate_w = contiguous_or_none(gate_w_o);
  const int64_t steps = x.size(0), B = x.size(1), I = x.size(2), G = h0.size(0), H = h0.size(2);
  const auto opts = h0.options();
  Tensor y = at::empty({steps, G, B, H}, opts);
  Tensor a = at::empty({steps, G, B, H}, opts);
  // The state entering each step (after its reset) and each pair's r, z, n, gh_n: kept for the
  // backward pass with save, else one step's worth of scratch.
  Tensor h_read = at::empty({save ? steps : 1, G, B, H}, opts);
  Tensor vals = at::empty({save ? steps : 1, G, B, 4 * H}, opts);
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
  std::vector<T> dots_h(3 * B), dots_x(3 * B);
  std::vector<T> pre(6 * B * H);  // per open pair: 4 pre-activations, the old state, the new state
  std::vector<int64_t> computed(G, 0);  // candidates computed, per layer
  for (int64_t t = 0; t < steps; ++t) {
    const int64_t slot = save ? t : 0;
    const T* alive_t = alive.defined() && resets[t] ? alive.data_ptr<T>() + t * B : nullptr;
    const T* x_t = xp + t * B * I;
    for (int64_t g = 0; g < G; ++g) {
      const T* prev = t == 0 ? h.data_ptr<T>() + g * B * H : yp + ((t - 1) * G + g) * B * H;
      T* hr = h_read.data_ptr<T>() + (slot * G + g) * B * H;
      T* yt = yp + (t * G + g) * B * H;
      T* at_ = ap + (t * G + g) * B * H;
      T* vt = vals.data_ptr<T>() + (slot * G + g) * B * 4 * H;
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
      }
      std::copy(hr, hr + B * H, yt);  // closed pairs keep their state exactly
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
          const T* __restrict__ gxb = gxd + b * 3 * H;
          const T* __restrict__ ghb = ghd + b * 3 * H;
          const T* __restrict__ ab = at_ + b * H;
          const T* __restrict__ hb = hr + b * H;
          T* __restrict__ yb = yt + b * H;
          T* __restrict__ vb = vt + b * 4 * H;  // dense steps keep (B, [r | z | n | gh_n]) rows
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) {
            const T nv = gru_unit<T>(gxb[j], gxb[H + j], gxb[2 * H + j], ghb[j], ghb[H + j], ghb[2 * H + j], hb[j],
                                     vb + j, H);
            yb[j] = ab[j] > T(0) ? nv : hb[j];
          }
        }
        continue;
      }
      computed[g] += n_open;
      // 1. the open pairs' pre-activations, by neuron, in the pairs' (CSR) order
      T* __restrict__ pre_r = pre.data();
      T* __restrict__ pre_z = pre_r + n_open;
      T* __restrict__ pre_xn = pre_z + n_open;
      T* __restrict__ pre_hn = pre_xn + n_open;
      T* __restrict__ h_old = pre_hn + n_open;
      for (int64_t j = 0; j < H; ++j) {
        const int64_t p0 = start[j], nb = start[j + 1] - p0;
        if (nb == 0) continue;
        const int32_t* sb = samples.data() + p0;
        for (int64_t q = 0; q < nb; ++q) {
          hvecs[q] = hr + int64_t(sb[q]) * H;
          xvecs[q] = x_t + int64_t(sb[q]) * I;
        }
        const T* hh_rows[3] = {whh + j * H, whh + (H + j) * H, whh + (2 * H + j) * H};
        const T* ih_rows[3] = {wih + j * I, wih + (H + j) * I, wih + (2 * H + j) * I};
        selective::rows_dots<T, 3>(hh_rows, hvecs.data(), nb, H, dots_h.data());
        selective::rows_dots<T, 3>(ih_rows, xvecs.data(), nb, I, dots_x.data());
        const T br = bih[j] + bhh[j], bz = bih[H + j] + bhh[H + j], bxn = bih[2 * H + j], bhn = bhh[2 * H + j];
        for (int64_t q = 0; q < nb; ++q) {
          const T* dh_ = dots_h.data() + 3 * q;
          const T* dx_ = dots_x.data() + 3 * q;
          pre_r[p0 + q] = dx_[0] + dh_[0] + br;
          pre_z[p0 + q] = dx_[1] + dh_[1] + bz;
          pre_xn[p0 + q] = dx_[2] + bxn;
          pre_hn[p0 + q] = dh_[2] + bhn;
          h_old[p0 + q] = hr[int64_t(sb[q]) * H + j];
        }
      }
      // 2. the units, vectorised over the pairs; sparse steps keep [r | z | n | gh_n], n_open each, in pair order
      T* __restrict__ s_r = vt;
      T* __restrict__ s_z = vt + n_open;
      T* __restrict__ s_n = vt + 2 * n_open;
      T* __restrict__ s_g = vt + 3 * n_open;
      T* __restrict__ fresh = h_old + n_open;
#pragma omp simd
      for (int64_t p = 0; p < n_open; ++p) {
        const T rr = sigmoid<T>(pre_r[p]);
        const T zz = sigmoid<T>(pre_z[p]);
        const T nn = tanh_sat<T>(pre_xn[p] + rr * pre_hn[p]);
        s_r[p] = rr;
        s_z[p] = zz;
        s_n[p] = nn;
        s_g[p] = pre_hn[p];
        fresh[p] = nn + zz * (h_old[p] - nn);
      }
      // 3. the new states into place
      for (int64_t j = 0; j < H; ++j)
        for (int64_t p = start[j]; p < start[j + 1]; ++p) yt[int64_t(samples[p]) * H + j] = fresh[p];
    }
  }
  Tensor h_last = steps > 0 ? y.select(0, steps - 1).clone() : h.clone();
  Tensor counts = at::empty({G}, opts.dtype(at::kDouble));
  for (int64_t g = 0; g < G; ++g) counts.data_ptr<double>()[g] = double(computed[g]);
  std::vector<Tensor> out{y, h_last, a, counts};
  if (save) {
    out.push_back(h_read);
    out.push_back(vals);
    out.push_back(dense);
  }
  return out;
}

}  // namespace

std::vector<Tensor> gru_selective_forward(Tensor x, Tensor h0, std::vector<Tensor> w_ih, std::vector<Tensor> b_ih,
                                          std::vector<Tensor> w_hh, std::vector<Tensor> b_hh, OptTensor alive,
                                          std::vector<bool> resets, Tensor gate_x, OptTensor gate_w, bool save,
                                          double dense_above) {
  DISPATCH(h0, gru_selective_forward_impl<scalar>(x, h0, w_ih, b_ih, w_hh, b_hh, alive, resets, gate_x, gate_w, save,
                                                  dense_above))
}

}  // namespace sparsernn
