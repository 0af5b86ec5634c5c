// CPU versions of the fused backend's unrouted time loops (sparsernn/core/fused_loops.py).
//
// Same arguments and results as the TorchScript loops of the same names; the
// per-step GEMM goes to ATen (MKL / oneDNN), the element-wise part of a step is
// one vectorised loop here instead of ~10 dispatched tensor ops. Built on first
// use by sparsernn/core/native.py; tested against the reference backend.
//
// Shapes: G layers, T steps, B sequences, H units, k gates; every tensor is made
// contiguous; rows r = g * B + b of a (G, B, .) tensor.
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

using at::Tensor;
using OptTensor = c10::optional<Tensor>;

template <typename T>
inline T sigmoid(T v) { return T(1) / (T(1) + std::exp(-v)); }

const Tensor* opt(const OptTensor& t) { return t.has_value() && t->defined() ? &*t : nullptr; }

// h[r, :] *= alive[t, 0, b, 0] for the rows of a step that resets.
template <typename T>
void apply_reset(T* __restrict__ state, const T* __restrict__ alive_t, int64_t G, int64_t B, int64_t H) {
  for (int64_t g = 0; g < G; ++g)
    for (int64_t b = 0; b < B; ++b) {
      const T a = alive_t[b];
      T* row = state + (g * B + b) * H;
      for (int64_t j = 0; j < H; ++j) row[j] *= a;
    }
}

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

template <typename T>
std::vector<Tensor> single_state_backward_impl(Tensor dy, Tensor dh0, Tensor k_h, OptTensor carry_o,
                                               OptTensor extra_o, Tensor w_hh, int64_t n_gates) {
  dy = dy.contiguous();
  k_h = k_h.contiguous();
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
    at::bmm_out(dh, dgh, w_hh);
    T* __restrict__ nd = dh.data_ptr<T>();
    const T* __restrict__ ex = extra ? extra_c.data_ptr<T>() + t * R * H : nullptr;
    for (int64_t x = 0; x < R * H; ++x) nd[x] += basep[x] + (ex ? ex[x] : T(0));
  }
  return {dh_all, dh};
}

template <typename T>
std::vector<Tensor> lstm_backward_impl(Tensor dy, Tensor dh0, Tensor dc0, Tensor k_c, Tensor k_gates, Tensor c_carry,
                                       OptTensor c_keep_o, OptTensor h_keep_o, OptTensor h_from_c_o,
                                       OptTensor extra_o, Tensor w_hh) {
  dy = dy.contiguous();
  k_c = k_c.contiguous();
  k_gates = k_gates.contiguous();
  c_carry = c_carry.contiguous();
  const int64_t steps = dy.size(0), G = dy.size(1), B = dy.size(2), H = dy.size(3), R = G * B;
  auto opts = dy.options();
  const Tensor* c_keep = opt(c_keep_o);
  const Tensor* h_keep = opt(h_keep_o);
  const Tensor* h_from_c = opt(h_from_c_o);
  const Tensor* extra = opt(extra_o);
  Tensor c_keep_c = c_keep ? c_keep->contiguous() : Tensor();
  Tensor h_keep_c = h_keep ? h_keep->contiguous() : Tensor();
  Tensor h_from_c_c = h_from_c ? h_from_c->contiguous() : Tensor();
  Tensor extra_c = extra ? extra->contiguous() : Tensor();
  Tensor dh_all = at::empty({steps, G, B, H}, opts);
  Tensor e_all = at::empty({steps, G, B, H}, opts);
  Tensor dc_all = at::empty({steps, G, B, H}, opts);
  Tensor dh = dh0.contiguous().clone();
  Tensor dc = dc0.contiguous().clone();
  Tensor base = at::empty({G, B, H}, opts);
  Tensor d4 = at::empty({G, B, 4 * H}, opts);
  for (int64_t i = 0; i < steps; ++i) {
    const int64_t t = steps - 1 - i;
    const int64_t off = t * R * H;
    T* __restrict__ dhp = dh.data_ptr<T>();
    T* __restrict__ dcp = dc.data_ptr<T>();
    const T* __restrict__ dyp = dy.data_ptr<T>() + off;
    const T* __restrict__ kc = k_c.data_ptr<T>() + off;
    const T* __restrict__ kg = k_gates.data_ptr<T>() + off * 4;
    const T* __restrict__ cc = c_carry.data_ptr<T>() + off;
    const T* __restrict__ ck = c_keep ? c_keep_c.data_ptr<T>() + off : nullptr;
    const T* __restrict__ hk = h_keep ? h_keep_c.data_ptr<T>() + off : nullptr;
    const T* __restrict__ hc = h_from_c ? h_from_c_c.data_ptr<T>() + off : nullptr;
    T* __restrict__ rdh = dh_all.data_ptr<T>() + off;
    T* __restrict__ re = e_all.data_ptr<T>() + off;
    T* __restrict__ rdc = dc_all.data_ptr<T>() + off;
    T* __restrict__ bs = base.data_ptr<T>();
    T* __restrict__ d4p = d4.data_ptr<T>();
    for (int64_t r = 0; r < R; ++r) {
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const int64_t x = r * H + j;
        const T vh = dhp[x] + dyp[x];
        const T vc = dcp[x];
        const T e = vc + vh * kc[x];
        rdh[x] = vh;
        re[x] = e;
        rdc[x] = vc;
        const T* k = kg + r * 4 * H;
        T* o = d4p + r * 4 * H;
        o[j] = e * k[j];
        o[H + j] = e * k[H + j];
        o[2 * H + j] = e * k[2 * H + j];
        o[3 * H + j] = vh * k[3 * H + j];
        T b = T(0);
        if (hk) b += vh * hk[x];
        if (hc) b += vc * hc[x];
        bs[x] = b;
        T ncd = e * cc[x];
        if (ck) ncd += vc * ck[x];
        dcp[x] = ncd;
      }
    }
    at::bmm_out(dh, d4, w_hh);
    T* __restrict__ nd = dh.data_ptr<T>();
    const T* __restrict__ ex = extra ? extra_c.data_ptr<T>() + off : nullptr;
    for (int64_t x = 0; x < R * H; ++x) nd[x] += bs[x] + (ex ? ex[x] : T(0));
  }
  return {dh_all, e_all, dc_all, dh, dc};
}

#define DISPATCH(tensor, call)                                                     \
  if ((tensor).scalar_type() == at::kFloat) { using scalar = float; return call; } \
  if ((tensor).scalar_type() == at::kDouble) { using scalar = double; return call; } \
  TORCH_CHECK(false, "sparsernn fused CPU loops take float32 or float64, got ", (tensor).scalar_type());

std::vector<Tensor> gru_forward(Tensor gx, Tensor h, OptTensor alive, std::vector<bool> resets, Tensor w_t,
                                Tensor b_hh, OptTensor gate_x, OptTensor gate_w, bool save) {
  DISPATCH(h, gru_forward_impl<scalar>(gx, h, alive, resets, w_t, b_hh, gate_x, gate_w, save))
}

std::vector<Tensor> lstm_forward(Tensor gx, Tensor h, Tensor c, OptTensor alive, std::vector<bool> resets,
                                 Tensor w_t, OptTensor gate_x, OptTensor gate_w, bool save) {
  DISPATCH(h, lstm_forward_impl<scalar>(gx, h, c, alive, resets, w_t, gate_x, gate_w, save))
}

std::vector<Tensor> single_state_backward(Tensor dy, Tensor dh, Tensor k_h, OptTensor carry, OptTensor extra,
                                          Tensor w_hh, int64_t n_gates) {
  DISPATCH(dy, single_state_backward_impl<scalar>(dy, dh, k_h, carry, extra, w_hh, n_gates))
}

std::vector<Tensor> lstm_backward(Tensor dy, Tensor dh, Tensor dc, Tensor k_c, Tensor k_gates, Tensor c_carry,
                                  OptTensor c_keep, OptTensor h_keep, OptTensor h_from_c, OptTensor extra,
                                  Tensor w_hh) {
  DISPATCH(dy, lstm_backward_impl<scalar>(dy, dh, dc, k_c, k_gates, c_carry, c_keep, h_keep, h_from_c, extra, w_hh))
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("gru_forward", &gru_forward);
  m.def("lstm_forward", &lstm_forward);
  m.def("single_state_backward", &single_state_backward);
  m.def("lstm_backward", &lstm_backward);
}
