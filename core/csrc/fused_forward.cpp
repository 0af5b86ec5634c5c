// Forward loops of the fused backend on a CPU (the TorchScript twins are in
// sparsernn/core/fused_loops.py: same loops, same results; here the entries take a
// group's per-layer parameters and compute the input projections). Per step: one GEMM
// (small_gemm.h) and one vectorised element-wise pass, instead of ~10
// dispatched tensor ops. Built on first use by sparsernn/core/native.py.
//
// Sequence tensors are stored group-major, (G, T, B, .), and handed back as
// (T, G, B, .) views: one layer's steps then sit together in memory, so its weight
// gradients are GEMMs on views (no transposing copies) and the group's input
// projection (one batched GEMM, (G, T*B, .)) is read as it is.
#include "fused_cpu.h"

namespace sparsernn {
namespace {

// One layer's open count and sum of sigmoid(a) over a training call (see close_switches).
struct SwitchSums {
  int64_t open = 0;
  double soft = 0.0;
};

// Selective update of one row: a = gate_x + w * h_old (w may be absent); where a <= 0 the new
// state (h_new, and c_new for the LSTM) is replaced by the old one, exactly. Stores a. With `sums`
// (a training call), adds the row's open count and sum of sigmoid(a) to its layer's totals: the
// update-rate loss's two reductions, taken here in one pass instead of over the stored a afterwards.
template <typename T>
inline void close_switches(T* __restrict__ h_new, T* __restrict__ c_new, const T* __restrict__ h_old,
                           const T* __restrict__ c_old, const T* __restrict__ gate_x, const T* __restrict__ w,
                           T* __restrict__ a_out, int64_t H, SwitchSums* sums) {
  for (int64_t j = 0; j < H; ++j) {
    const T a = w ? gate_x[j] + w[j] * h_old[j] : gate_x[j];
    a_out[j] = a;
    if (!(a > T(0))) {
      h_new[j] = h_old[j];
      if (c_new) c_new[j] = c_old[j];
    }
  }
  if (sums) {
    T soft = T(0);
    int64_t open = 0;
#pragma omp simd reduction(+ : soft, open)
    for (int64_t j = 0; j < H; ++j) {
      soft += sigmoid<T>(a_out[j]);
      open += a_out[j] > T(0) ? 1 : 0;
    }
    sums->soft += static_cast<double>(soft);
    sums->open += open;
  }
}

// Per layer of a gated training call: the (count, soft) outputs, (G,) int64 and (G,) of the
// state's dtype, from the loops' totals.
inline std::vector<Tensor> switch_sums_out(const std::vector<SwitchSums>& sums, const at::TensorOptions& opts) {
  const int64_t G = static_cast<int64_t>(sums.size());
  Tensor open = at::empty({G}, opts.dtype(at::kLong)), soft = at::empty({G}, at::TensorOptions().dtype(at::kDouble));
  for (int64_t g = 0; g < G; ++g) {
    open.data_ptr<int64_t>()[g] = sums[g].open;
    soft.data_ptr<double>()[g] = sums[g].soft;
  }
  return {open, soft.to(opts.dtype())};
}

// A forward loop's optional inputs (made contiguous, sequences group-major; undefined when absent)
// and, for a gated layer, its output a (G, T, B, H): the switches' pre-activations.
struct LoopInputs {
  Tensor alive, gate_x, gate_w, a;
};

inline LoopInputs loop_inputs(const OptTensor& alive, const OptTensor& gate_x, const OptTensor& gate_w, int64_t G,
                              int64_t steps, int64_t B, int64_t H, const at::TensorOptions& opts) {
  LoopInputs in{contiguous_or_none(alive), group_major_or_none(gate_x), contiguous_or_none(gate_w), Tensor()};
  if (in.gate_x.defined()) in.a = at::empty({G, steps, B, H}, opts);
  return in;
}

template <typename T>
std::vector<Tensor> gru_forward_impl(Tensor gx, Tensor h0, OptTensor alive_o, const std::vector<bool>& resets,
                                     Tensor w_t, Tensor b_hh, OptTensor gate_x_o, OptTensor gate_w_o, bool save) {
  gx = group_major(gx);
  const int64_t G = gx.size(0), steps = gx.size(1), B = gx.size(2), H = h0.size(2), R = G * B;
  auto opts = h0.options();
  Tensor h = h0.contiguous().clone();
  Tensor y = at::empty({G, steps, B, H}, opts);
  Tensor gh = at::empty({G, B, 3 * H}, opts);
  const Tensor wt = w_t.contiguous();  // (G, H, 3H): the step GEMM's right-hand side, row-major
  const T* wtp = wt.data_ptr<T>();
  const LoopInputs in = loop_inputs(alive_o, gate_x_o, gate_w_o, G, steps, B, H, opts);
  const bool alive = in.alive.defined(), gate_x = in.gate_x.defined(), gate_w = in.gate_w.defined();
  std::vector<SwitchSums> sums(gate_x && save ? G : 0);
  Tensor h_read, rz, n_all, ghn;
  if (save) {
    h_read = at::empty({G, steps, B, H}, opts);
    rz = at::empty({G, steps, B, 2 * H}, opts);
    n_all = at::empty({G, steps, B, H}, opts);
    ghn = at::empty({G, steps, B, H}, opts);
  }
  // Without save, the step values go to one step's worth of scratch (so the main loop has no branches).
  Tensor scratch = save ? Tensor() : at::empty({R, 5 * H}, opts);
  T* hp = h.data_ptr<T>();
  const T* gxp = gx.data_ptr<T>();
  T* ghp = gh.data_ptr<T>();
  Tensor b_c = b_hh.contiguous();
  const T* bp = b_c.data_ptr<T>();
  T* yp = y.data_ptr<T>();
  T* shp = save ? h_read.data_ptr<T>() : scratch.data_ptr<T>();
  T* srzp = save ? rz.data_ptr<T>() : scratch.data_ptr<T>() + R * H;
  T* snp = save ? n_all.data_ptr<T>() : scratch.data_ptr<T>() + 3 * R * H;
  T* sgp = save ? ghn.data_ptr<T>() : scratch.data_ptr<T>() + 4 * R * H;
  for (int64_t t = 0; t < steps; ++t) {
    if (alive && resets[t]) apply_reset<T>(hp, in.alive.data_ptr<T>() + t * B, G, B, H);
    group_gemm<T>(hp, B * H, H, wtp, ghp, G, B, H, 3 * H);  // gh = h @ W_hh^T; b_hh is added below
    for (int64_t r = 0; r < R; ++r) {
      const int64_t row = group_major_row(t, r, steps, B);
      const int64_t kept = save ? row : r;
      const T* __restrict__ xr = gxp + row * 3 * H;
      const T* __restrict__ hr_ = ghp + r * 3 * H;
      const T* __restrict__ bb = bp + (r / B) * 3 * H;
      T* __restrict__ hv = hp + r * H;
      T* __restrict__ yv = yp + row * H;
      T* __restrict__ sh = shp + kept * H;
      T* __restrict__ srz = srzp + kept * 2 * H;
      T* __restrict__ sn = snp + kept * H;
      T* __restrict__ sg = sgp + kept * H;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const T hold = hv[j];
        const T rr = sigmoid<T>(xr[j] + (hr_[j] + bb[j]));
        const T zz = sigmoid<T>(xr[H + j] + (hr_[H + j] + bb[H + j]));
        const T gn = hr_[2 * H + j] + bb[2 * H + j];
        const T nn = tanh_sat<T>(xr[2 * H + j] + rr * gn);
        sh[j] = hold;
        srz[j] = rr;
        srz[H + j] = zz;
        sn[j] = nn;
        sg[j] = gn;
        yv[j] = nn + zz * (hold - nn);
      }
      if (gate_x)
        close_switches<T>(yv, nullptr, hv, nullptr, in.gate_x.data_ptr<T>() + row * H,
                          gate_w ? in.gate_w.data_ptr<T>() + (r / B) * H : nullptr, in.a.data_ptr<T>() + row * H, H,
                          sums.empty() ? nullptr : &sums[r / B]);
      std::copy(yv, yv + H, hv);
    }
  }
  std::vector<Tensor> out{y.transpose(0, 1), h};
  if (gate_x) out.push_back(in.a.transpose(0, 1));
  if (!sums.empty()) for (const Tensor& s : switch_sums_out(sums, opts)) out.push_back(s);
  if (save) {
    for (Tensor* s : {&h_read, &rz, &n_all, &ghn}) out.push_back(s->transpose(0, 1));
  }
  return out;
}

template <typename T>
std::vector<Tensor> lstm_forward_impl(Tensor gx, Tensor h0, Tensor c0, OptTensor alive_o,
                                      const std::vector<bool>& resets, Tensor w_t, OptTensor gate_x_o,
                                      OptTensor gate_w_o, bool save) {
  gx = group_major(gx);
  const int64_t G = gx.size(0), steps = gx.size(1), B = gx.size(2), H = h0.size(2), R = G * B;
  auto opts = h0.options();
  Tensor h = h0.contiguous().clone(), c = c0.contiguous().clone();
  Tensor y = at::empty({G, steps, B, H}, opts);
  Tensor pre = at::empty({G, B, 4 * H}, opts);
  const Tensor wt = w_t.contiguous();  // (G, H, 4H): the step GEMM's right-hand side, row-major
  const T* wtp = wt.data_ptr<T>();
  const LoopInputs in = loop_inputs(alive_o, gate_x_o, gate_w_o, G, steps, B, H, opts);
  const bool alive = in.alive.defined(), gate_x = in.gate_x.defined(), gate_w = in.gate_w.defined();
  std::vector<SwitchSums> sums(gate_x && save ? G : 0);
  Tensor h_read, c_read, act, cand;
  if (save) {
    h_read = at::empty({G, steps, B, H}, opts);
    c_read = at::empty({G, steps, B, H}, opts);
    act = at::empty({G, steps, B, 4 * H}, opts);
    cand = at::empty({G, steps, B, H}, opts);
  }
  Tensor c_new = at::empty({R, H}, opts);
  Tensor scratch = save ? Tensor() : at::empty({R, 7 * H}, opts);
  T* hp = h.data_ptr<T>();
  T* cp = c.data_ptr<T>();
  T* cnp = c_new.data_ptr<T>();
  T* prep = pre.data_ptr<T>();
  const T* gxp = gx.data_ptr<T>();
  T* yp = y.data_ptr<T>();
  T* shp = save ? h_read.data_ptr<T>() : scratch.data_ptr<T>();
  T* scp = save ? c_read.data_ptr<T>() : scratch.data_ptr<T>() + R * H;
  T* sap = save ? act.data_ptr<T>() : scratch.data_ptr<T>() + 2 * R * H;
  T* snp = save ? cand.data_ptr<T>() : scratch.data_ptr<T>() + 6 * R * H;
  for (int64_t t = 0; t < steps; ++t) {
    if (alive && resets[t]) {
      apply_reset<T>(hp, in.alive.data_ptr<T>() + t * B, G, B, H);
      apply_reset<T>(cp, in.alive.data_ptr<T>() + t * B, G, B, H);
    }
    group_gemm<T>(hp, B * H, H, wtp, prep, G, B, H, 4 * H);  // pre = h @ W_hh^T; gx[t] is added below
    for (int64_t r = 0; r < R; ++r) {
      const int64_t row = group_major_row(t, r, steps, B);
      const int64_t kept = save ? row : r;
      const T* __restrict__ pr = prep + r * 4 * H;
      const T* __restrict__ xr = gxp + row * 4 * H;
      T* __restrict__ hv = hp + r * H;
      T* __restrict__ cv = cp + r * H;
      T* __restrict__ cn_out = cnp + r * H;
      T* __restrict__ yv = yp + row * H;
      T* __restrict__ sh = shp + kept * H;
      T* __restrict__ sc = scp + kept * H;
      T* __restrict__ sa = sap + kept * 4 * H;
      T* __restrict__ sn = snp + kept * H;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const T cold = cv[j];
        const T ig = sigmoid<T>(xr[j] + pr[j]);
        const T fg = sigmoid<T>(xr[H + j] + pr[H + j]);
        const T gg = tanh_sat<T>(xr[2 * H + j] + pr[2 * H + j]);
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
        yv[j] = og * tanh_sat<T>(cn);
      }
      if (gate_x)
        close_switches<T>(yv, cn_out, hv, cv, in.gate_x.data_ptr<T>() + row * H,
                          gate_w ? in.gate_w.data_ptr<T>() + (r / B) * H : nullptr, in.a.data_ptr<T>() + row * H, H,
                          sums.empty() ? nullptr : &sums[r / B]);
      std::copy(yv, yv + H, hv);
      std::copy(cn_out, cn_out + H, cv);
    }
  }
  std::vector<Tensor> out{y.transpose(0, 1), h, c};
  if (gate_x) out.push_back(in.a.transpose(0, 1));
  if (!sums.empty()) for (const Tensor& s : switch_sums_out(sums, opts)) out.push_back(s);
  if (save) {
    for (Tensor* s : {&h_read, &c_read, &act, &cand}) out.push_back(s->transpose(0, 1));
  }
  return out;
}

// A group's loop inputs from per-layer tensors (what Python would otherwise stack): the input
// projections of all steps, gx (T, G, B, kH) = x @ W_ih^T + b_ih (+ extra_bias), as a view of
// group-major memory (one GEMM per layer, written in place), and W_hh^T (G, H, kH), row-major.
std::pair<Tensor, Tensor> group_inputs(const Tensor& x, const std::vector<Tensor>& w_ih,
                                       const std::vector<Tensor>& b_ih, const std::vector<Tensor>& w_hh,
                                       const std::vector<Tensor>* extra_bias) {
  const int64_t G = static_cast<int64_t>(w_ih.size()), steps = x.size(0), B = x.size(1);
  const int64_t K = w_ih[0].size(0), H = w_hh[0].size(1);
  const Tensor x_flat = x.reshape({steps * B, x.size(2)});
  Tensor gx = at::empty({G, steps * B, K}, x.options());
  Tensor w_t = at::empty({G, H, K}, x.options());
  for (int64_t g = 0; g < G; ++g) {
    const Tensor bias = extra_bias ? b_ih[g] + (*extra_bias)[g] : b_ih[g];
    Tensor out = gx.select(0, g);
    at::addmm_out(out, bias, x_flat, w_ih[g].t());
    const Tensor w = w_hh[g].contiguous();
    AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "transpose_into", [&] {
      transpose_into<scalar_t>(w.data_ptr<scalar_t>(), w_t.data_ptr<scalar_t>() + g * H * K, K, H);
    });
  }
  return {gx.view({G, steps, B, K}).transpose(0, 1), w_t};
}

}  // namespace

std::vector<Tensor> gru_group_forward(Tensor x, Tensor h, std::vector<Tensor> w_ih, std::vector<Tensor> b_ih,
                                      std::vector<Tensor> w_hh, std::vector<Tensor> b_hh, OptTensor alive,
                                      std::vector<bool> resets, OptTensor gate_x, OptTensor gate_w, bool save) {
  auto [gx, w_t] = group_inputs(x, w_ih, b_ih, w_hh, nullptr);
  const Tensor b = at::stack(b_hh).unsqueeze(1);
  DISPATCH(h, gru_forward_impl<scalar>(gx, h, alive, resets, w_t, b, gate_x, gate_w, save))
}

std::vector<Tensor> lstm_group_forward(Tensor x, Tensor h, Tensor c, std::vector<Tensor> w_ih,
                                       std::vector<Tensor> b_ih, std::vector<Tensor> w_hh, std::vector<Tensor> b_hh,
                                       OptTensor alive, std::vector<bool> resets, OptTensor gate_x, OptTensor gate_w,
                                       bool save) {
  auto [gx, w_t] = group_inputs(x, w_ih, b_ih, w_hh, &b_hh);  // the LSTM adds b_hh to gx
  DISPATCH(h, lstm_forward_impl<scalar>(gx, h, c, alive, resets, w_t, gate_x, gate_w, save))
}

}  // namespace sparsernn
