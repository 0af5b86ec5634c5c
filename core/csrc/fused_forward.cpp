// Forward loops of the fused backend on a CPU (the TorchScript twins are in
// sparsernn/core/fused_loops.py; same arguments and results). Per step: one GEMM
// (ATen: MKL / oneDNN) and one vectorised element-wise pass, instead of ~10
// dispatched tensor ops. Built on first use by sparsernn/core/native.py.
#include "fused_cpu.h"

namespace sparsernn {
namespace {

// Selective update of one step: a = gate_x + w * h_old (w may be absent); where a <= 0 the new
// state (h_new, and c_new for the LSTM) is replaced by the old one, exactly. Stores a.
template <typename T>
void close_switches(T* __restrict__ h_new, T* __restrict__ c_new, const T* __restrict__ h_old,
                    const T* __restrict__ c_old, const T* __restrict__ gate_x, const T* __restrict__ gate_w,
                    T* __restrict__ a_out, int64_t G, int64_t B, int64_t H) {
  for (int64_t r = 0; r < G * B; ++r) {
    const T* w = gate_w ? gate_w + (r / B) * H : nullptr;
    for (int64_t j = 0; j < H; ++j) {
      const int64_t x = r * H + j;
      const T a = w ? gate_x[x] + w[j] * h_old[x] : gate_x[x];
      a_out[x] = a;
      if (!(a > T(0))) {
        h_new[x] = h_old[x];
        if (c_new) c_new[x] = c_old[x];
      }
    }
  }
}

template <typename T>
std::vector<Tensor> gru_forward_impl(Tensor gx, Tensor h0, OptTensor alive_o, const std::vector<bool>& resets,
                                     Tensor w_t, Tensor b_hh, OptTensor gate_x_o, OptTensor gate_w_o, bool save) {
  gx = gx.contiguous();
  const int64_t steps = gx.size(0), G = gx.size(1), B = gx.size(2), H = h0.size(2), R = G * B;
  auto opts = h0.options();
  Tensor h = h0.contiguous().clone();
  Tensor y = at::empty({steps, G, B, H}, opts);
  Tensor gh = at::empty({G, B, 3 * H}, opts);
  const Tensor* alive = opt(alive_o);
  Tensor alive_c = alive ? alive->contiguous() : Tensor();
  const Tensor* gate_x = opt(gate_x_o);
  const Tensor* gate_w = opt(gate_w_o);
  Tensor gate_xc = gate_x ? gate_x->contiguous() : Tensor();
  Tensor gate_wc = gate_w ? gate_w->contiguous() : Tensor();
  Tensor a_all = gate_x ? at::empty({steps, G, B, H}, opts) : Tensor();
  Tensor h_read, rz, n_all, ghn;
  if (save) {
    h_read = at::empty({steps, G, B, H}, opts);
    rz = at::empty({steps, G, B, 2 * H}, opts);
    n_all = at::empty({steps, G, B, H}, opts);
    ghn = at::empty({steps, G, B, H}, opts);
  }
  // Without save, the step values go to one step's worth of scratch (so the main loop has no branches).
  Tensor scratch = save ? Tensor() : at::empty({R, 5 * H}, opts);
  T* hp = h.data_ptr<T>();
  const T* gxp = gx.data_ptr<T>();
  T* ghp = gh.data_ptr<T>();
  Tensor b_c = b_hh.contiguous();
  const T* bp = b_c.data_ptr<T>();
  T* yp = y.data_ptr<T>();
  for (int64_t t = 0; t < steps; ++t) {
    if (alive && resets[t]) apply_reset<T>(hp, alive_c.data_ptr<T>() + t * B, G, B, H);
    at::bmm_out(gh, h, w_t);  // b_hh is added below (baddbmm_out would first copy it into gh)
    const int64_t step = save ? t * R : 0;
    T* shp = save ? h_read.data_ptr<T>() : scratch.data_ptr<T>();
    T* srzp = save ? rz.data_ptr<T>() : scratch.data_ptr<T>() + R * H;
    T* snp = save ? n_all.data_ptr<T>() : scratch.data_ptr<T>() + 3 * R * H;
    T* sgp = save ? ghn.data_ptr<T>() : scratch.data_ptr<T>() + 4 * R * H;
    for (int64_t r = 0; r < R; ++r) {
      const T* __restrict__ xr = gxp + (t * R + r) * 3 * H;
      const T* __restrict__ hr_ = ghp + r * 3 * H;
      const T* __restrict__ bb = bp + (r / B) * 3 * H;
      const T* __restrict__ hv = hp + r * H;
      T* __restrict__ yv = yp + (t * R + r) * H;
      T* __restrict__ sh = shp + (step + r) * H;
      T* __restrict__ srz = srzp + (step + r) * 2 * H;
      T* __restrict__ sn = snp + (step + r) * H;
      T* __restrict__ sg = sgp + (step + r) * H;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const T hold = hv[j];
        const T rr = sigmoid<T>(xr[j] + (hr_[j] + bb[j]));
        const T zz = sigmoid<T>(xr[H + j] + (hr_[H + j] + bb[H + j]));
        const T gn = hr_[2 * H + j] + bb[2 * H + j];
        const T nn = std::tanh(xr[2 * H + j] + rr * gn);
        sh[j] = hold;
        srz[j] = rr;
        srz[H + j] = zz;
        sn[j] = nn;
        sg[j] = gn;
        yv[j] = nn + zz * (hold - nn);
      }
    }
    if (gate_x) close_switches<T>(yp + t * R * H, nullptr, hp, nullptr, gate_xc.data_ptr<T>() + t * R * H,
                                  gate_w ? gate_wc.data_ptr<T>() : nullptr, a_all.data_ptr<T>() + t * R * H, G, B, H);
    std::copy(yp + t * R * H, yp + (t + 1) * R * H, hp);
  }
  std::vector<Tensor> out{y, h};
  if (gate_x) out.push_back(a_all);
  if (save) { out.push_back(h_read); out.push_back(rz); out.push_back(n_all); out.push_back(ghn); }
  return out;
}

template <typename T>
std::vector<Tensor> lstm_forward_impl(Tensor gx, Tensor h0, Tensor c0, OptTensor alive_o,
                                      const std::vector<bool>& resets, Tensor w_t, OptTensor gate_x_o,
                                      OptTensor gate_w_o, bool save) {
  gx = gx.contiguous();
  const int64_t steps = gx.size(0), G = gx.size(1), B = gx.size(2), H = h0.size(2), R = G * B;
  auto opts = h0.options();
  Tensor h = h0.contiguous().clone(), c = c0.contiguous().clone();
  Tensor y = at::empty({steps, G, B, H}, opts);
  Tensor pre = at::empty({G, B, 4 * H}, opts);
  const Tensor* alive = opt(alive_o);
  Tensor alive_c = alive ? alive->contiguous() : Tensor();
  const Tensor* gate_x = opt(gate_x_o);
  const Tensor* gate_w = opt(gate_w_o);
  Tensor gate_xc = gate_x ? gate_x->contiguous() : Tensor();
  Tensor gate_wc = gate_w ? gate_w->contiguous() : Tensor();
  Tensor a_all = gate_x ? at::empty({steps, G, B, H}, opts) : Tensor();
  Tensor h_read, c_read, act, cand;
  if (save) {
    h_read = at::empty({steps, G, B, H}, opts);
    c_read = at::empty({steps, G, B, H}, opts);
    act = at::empty({steps, G, B, 4 * H}, opts);
    cand = at::empty({steps, G, B, H}, opts);
  }
  Tensor c_new = at::empty({R, H}, opts);
  Tensor scratch = save ? Tensor() : at::empty({R, 7 * H}, opts);
  T* hp = h.data_ptr<T>();
  T* cp = c.data_ptr<T>();
  T* cnp = c_new.data_ptr<T>();
  T* prep = pre.data_ptr<T>();
  const T* gxp = gx.data_ptr<T>();
  T* yp = y.data_ptr<T>();
  for (int64_t t = 0; t < steps; ++t) {
    if (alive && resets[t]) {
      apply_reset<T>(hp, alive_c.data_ptr<T>() + t * B, G, B, H);
      apply_reset<T>(cp, alive_c.data_ptr<T>() + t * B, G, B, H);
    }
    at::bmm_out(pre, h, w_t);  // gx[t] is added below (baddbmm_out would first copy it into pre)
    const int64_t step = save ? t * R : 0;
    T* shp = save ? h_read.data_ptr<T>() : scratch.data_ptr<T>();
    T* scp = save ? c_read.data_ptr<T>() : scratch.data_ptr<T>() + R * H;
    T* sap = save ? act.data_ptr<T>() : scratch.data_ptr<T>() + 2 * R * H;
    T* snp = save ? cand.data_ptr<T>() : scratch.data_ptr<T>() + 6 * R * H;
    for (int64_t r = 0; r < R; ++r) {
      const T* __restrict__ pr = prep + r * 4 * H;
      const T* __restrict__ xr = gxp + (t * R + r) * 4 * H;
      const T* __restrict__ hv = hp + r * H;
      const T* __restrict__ cv = cp + r * H;
      T* __restrict__ cn_out = cnp + r * H;
      T* __restrict__ yv = yp + (t * R + r) * H;
      T* __restrict__ sh = shp + (step + r) * H;
      T* __restrict__ sc = scp + (step + r) * H;
      T* __restrict__ sa = sap + (step + r) * 4 * H;
      T* __restrict__ sn = snp + (step + r) * H;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const T cold = cv[j];
        const T ig = sigmoid<T>(xr[j] + pr[j]);
        const T fg = sigmoid<T>(xr[H + j] + pr[H + j]);
        const T gg = std::tanh(xr[2 * H + j] + pr[2 * H + j]);
        const T og = sigmoid<T>(xr[3 * H + j] + pr[3 * H + j]);
        const T cn = fg * cold + ig * gg;
        sh[j] = hv[j];
        sc[j] = cold;
        sn[j] = cn;
        sa[j] = ig;  // act = [i, f, o, g]
        sa[H + j] = fg;
        sa[2 * H + j] = og;
        sa[3 * H + j] = gg;
        cn_out[j] = cn;
        yv[j] = og * std::tanh(cn);
      }
    }
    if (gate_x) close_switches<T>(yp + t * R * H, cnp, hp, cp, gate_xc.data_ptr<T>() + t * R * H,
                                  gate_w ? gate_wc.data_ptr<T>() : nullptr, a_all.data_ptr<T>() + t * R * H, G, B, H);
    std::copy(yp + t * R * H, yp + (t + 1) * R * H, hp);
    std::copy(cnp, cnp + R * H, cp);
  }
  std::vector<Tensor> out{y, h, c};
  if (gate_x) out.push_back(a_all);
  if (save) { out.push_back(h_read); out.push_back(c_read); out.push_back(act); out.push_back(cand); }
  return out;
}

}  // namespace

std::vector<Tensor> gru_forward(Tensor gx, Tensor h, OptTensor alive, std::vector<bool> resets, Tensor w_t,
                                Tensor b_hh, OptTensor gate_x, OptTensor gate_w, bool save) {
  DISPATCH(h, gru_forward_impl<scalar>(gx, h, alive, resets, w_t, b_hh, gate_x, gate_w, save))
}

std::vector<Tensor> lstm_forward(Tensor gx, Tensor h, Tensor c, OptTensor alive, std::vector<bool> resets,
                                 Tensor w_t, OptTensor gate_x, OptTensor gate_w, bool save) {
  DISPATCH(h, lstm_forward_impl<scalar>(gx, h, c, alive, resets, w_t, gate_x, gate_w, save))
}

}  // namespace sparsernn
