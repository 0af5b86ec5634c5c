// The routed forward loop on a CPU (routed_common.h says what it twins): per step and sample the
// router's scores of z = [x_t, h], the exact top-k of each side, then the kept channels' products
// through routed_products.h, which touch only the kept channels' rows of W^T, and the cell.
#include "routed_common.h"

namespace sparsernn {
namespace {

using namespace routed;

template <typename T>
std::vector<Tensor> routed_forward_impl(Cell cell, Tensor x, Tensor h0, OptTensor c_o, OptTensor alive_o,
                                        const std::vector<bool>& resets, const std::vector<Tensor>& w_ih_t_in,
                                        Tensor b_ih, const std::vector<Tensor>& w_hh_t_in, Tensor b_hh, Tensor scale,
                                        Tensor bias, Tensor down, Tensor up, int64_t k_in, int64_t k_h,
                                        OptTensor gate_x_o, OptTensor gate_w_o, bool save) {
  x = x.contiguous();
  const int64_t steps = x.size(0), B = x.size(1), I = x.size(2), G = h0.size(0), H = h0.size(2), R = G * B;
  const int64_t K = gates_of(cell) * H, W = I + H, rank = down.size(1);
  const bool lstm = cell == Cell::kLstm, route_in = k_in < I;
  auto opts = h0.options();
  Tensor h = h0.contiguous().clone();
  Tensor c = lstm ? opt(c_o)->contiguous().clone() : at::empty({0}, opts);
  b_ih = b_ih.contiguous(); b_hh = b_hh.contiguous(); scale = scale.contiguous(); bias = bias.contiguous();
  down = down.contiguous();
  up = up.transpose(1, 2).contiguous();  // (G, r, W): the context term runs along the channels
  const std::vector<Tensor> wi = contiguous_all(w_ih_t_in), wh = contiguous_all(w_hh_t_in);
  const Tensor alive = contiguous_or_none(alive_o), gate_x = contiguous_or_none(gate_x_o);
  const Tensor gate_w = contiguous_or_none(gate_w_o);
  const bool gated = gate_x.defined();
  Tensor y = at::empty({steps, G, B, H}, opts), s_all = at::empty({steps, G, B, W}, opts);
  Tensor a_all = gated ? at::empty({steps, G, B, H}, opts) : Tensor();
  const int64_t zrows = save ? steps * R : R;  // without save, one step's worth of scratch
  Tensor z_all = at::empty({zrows, W}, opts), u_all = at::empty({zrows, rank}, opts);
  Tensor m_all = at::empty({zrows, W}, opts);
  Tensor first, second, third, gru_all;
  if (save) {
    if (cell == Cell::kGru) {  // one [rz | n | ghn] buffer, handed out as views (the backward reads it whole)
      gru_all = at::empty({steps, G, B, 4 * H}, opts);
      first = gru_all.narrow(3, 0, 2 * H); second = gru_all.narrow(3, 2 * H, H); third = gru_all.narrow(3, 3 * H, H);
    } else if (lstm) {
      first = at::empty({steps, G, B, H}, opts); second = at::empty({steps, G, B, 4 * H}, opts);
      third = at::empty({steps, G, B, H}, opts);
    } else {
      first = at::empty({steps, G, B, H}, opts);
    }
  }
  // Unrouted input: every step's input projection in one GEMM per layer, (G, T * B, K).
  Tensor gx_all;
  if (!route_in) {
    gx_all = at::empty({G, steps * B, K}, opts);
    for (int64_t g = 0; g < G; ++g) {
      Tensor out_g = gx_all[g];
      at::addmm_out(out_g, b_ih[g][0], x.view({steps * B, I}), wi[g]);
    }
  }
  Tensor gx = at::empty({R, K}, opts), gh = at::empty({R, K}, opts);
  Tensor scratch = save ? Tensor() : at::empty({6 * H}, opts);
  const std::vector<T> zero_row(H, T(0));
  std::vector<int32_t> idx_in(R * k_in), idx_h(R * k_h);
  std::vector<T> vals_in(R * k_in), vals_h(R * k_h), c_new(H);
  std::vector<OrderKey<T>> keys;
  const T* xp = x.data_ptr<T>();
  T* hp = h.data_ptr<T>();
  T* cp = lstm ? c.data_ptr<T>() : nullptr;
  const T *bip = b_ih.data_ptr<T>(), *bhp = b_hh.data_ptr<T>(), *scp = scale.data_ptr<T>(), *bsp = bias.data_ptr<T>();
  const T *dnp = down.data_ptr<T>(), *upp = up.data_ptr<T>();
  T *yp = y.data_ptr<T>(), *sp = s_all.data_ptr<T>(), *zp = z_all.data_ptr<T>(), *up_ = u_all.data_ptr<T>();
  T* mp = m_all.data_ptr<T>();
  T *gxp = gx.data_ptr<T>(), *ghp = gh.data_ptr<T>();
  // Every pointer the row loops use, taken once (data_ptr checks the dtype on each call).
  const T* gx_all_p = route_in ? nullptr : gx_all.data_ptr<T>();
  const T* alive_p = alive.defined() ? alive.data_ptr<T>() : nullptr;
  T* scratch_p = save ? nullptr : scratch.data_ptr<T>();
  T* first_p = save ? first.data_ptr<T>() : nullptr;
  T* second_p = save && cell != Cell::kElman && cell != Cell::kGru ? second.data_ptr<T>() : nullptr;
  T* third_p = save && lstm ? third.data_ptr<T>() : nullptr;
  T* gru_all_p = save && cell == Cell::kGru ? gru_all.data_ptr<T>() : nullptr;
  const T* gate_x_p = gated ? gate_x.data_ptr<T>() : nullptr;
  const T* gate_w_p = gate_w.defined() ? gate_w.data_ptr<T>() : nullptr;
  T* a_p = gated ? a_all.data_ptr<T>() : nullptr;
  std::vector<const T*> wi_p(G), wh_p(G);
  for (int64_t g = 0; g < G; ++g) { wi_p[g] = wi[g].data_ptr<T>(); wh_p[g] = wh[g].data_ptr<T>(); }
  for (int64_t t = 0; t < steps; ++t) {
    if (alive.defined() && resets[t]) {
      apply_reset<T>(hp, alive_p + t * B, G, B, H);
      if (lstm) apply_reset<T>(cp, alive_p + t * B, G, B, H);
    }
    // The router: z, u = tanh(V z), s = |z| scale + U u + bias, the top-k of each side.
    for (int64_t r = 0; r < R; ++r) {
      const int64_t g = r / B, b = r % B, o = t * R + r, zo = save ? o : r;
      T* __restrict__ zr = zp + zo * W;
      T* __restrict__ ur = up_ + zo * rank;
      T* __restrict__ sr = sp + o * W;
      T* __restrict__ mr = mp + zo * W;
      std::copy(xp + (t * B + b) * I, xp + (t * B + b + 1) * I, zr);
      std::copy(hp + r * H, hp + (r + 1) * H, zr + I);
      for (int64_t q = 0; q < rank; ++q) ur[q] = tanh_sat<T>(dot<T>(dnp + (g * rank + q) * W, zr, W));
      const T* __restrict__ sc = scp + g * W;
      const T* __restrict__ bs = bsp + g * W;
#pragma omp simd
      for (int64_t w = 0; w < W; ++w) sr[w] = std::abs(zr[w]) * sc[w] + bs[w];
      for (int64_t q = 0; q < rank; ++q) {
        const T* __restrict__ uq = upp + (g * rank + q) * W;
        const T a = ur[q];
#pragma omp simd
        for (int64_t w = 0; w < W; ++w) sr[w] += uq[w] * a;
      }
      select_top_k<T>(sr, I, k_in, idx_in.data() + r * k_in, mr, keys);
      select_top_k<T>(sr + I, H, k_h, idx_h.data() + r * k_h, mr + I, keys);
      for (int64_t q = 0; q < k_in; ++q) vals_in[r * k_in + q] = zr[idx_in[r * k_in + q]];
      for (int64_t q = 0; q < k_h; ++q) vals_h[r * k_h + q] = zr[I + idx_h[r * k_h + q]];
    }
    // The kept channels' products.
    for (int64_t g = 0; g < G; ++g) {
      if (route_in)
        gather_product<T>(vals_in.data() + g * B * k_in, idx_in.data() + g * B * k_in, B, k_in, wi_p[g],
                          K, bip + g * K, gxp + g * B * K, K);
      gather_product<T>(vals_h.data() + g * B * k_h, idx_h.data() + g * B * k_h, B, k_h, wh_p[g], K,
                        bhp + g * K, ghp + g * B * K, K);
    }
    // The cell, then the switch.
    for (int64_t r = 0; r < R; ++r) {
      const int64_t g = r / B, b = r % B, o = t * R + r;
      const T* __restrict__ xr = route_in ? gxp + r * K : gx_all_p + ((g * steps + t) * B + b) * K;
      const T* __restrict__ hr = ghp + r * K;
      T* __restrict__ hv = hp + r * H;
      T* __restrict__ yv = yp + o * H;
      T* __restrict__ cv = lstm ? cp + r * H : nullptr;
      // Without save, the step values go to scratch rows (so the element loops have no branches).
      const int64_t so = save ? o : 0;
      if (cell == Cell::kGru) {
        T* __restrict__ srz = (save ? gru_all_p : scratch_p) + so * 4 * H;
        T* __restrict__ sn = srz + 2 * H;
        T* __restrict__ sg = srz + 3 * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const T rr = sigmoid<T>(xr[j] + hr[j]);
          const T zz = sigmoid<T>(xr[H + j] + hr[H + j]);
          const T gn = hr[2 * H + j];
          const T nn = tanh_sat<T>(xr[2 * H + j] + rr * gn);
          srz[j] = rr; srz[H + j] = zz; sn[j] = nn; sg[j] = gn;
          yv[j] = nn + zz * (hv[j] - nn);
        }
      } else if (lstm) {
        T* __restrict__ scr = (save ? first_p : scratch_p) + so * H;
        T* __restrict__ sact = (save ? second_p : scratch_p + H) + so * 4 * H;
        T* __restrict__ scand = (save ? third_p : scratch_p + 5 * H) + so * H;
        T* __restrict__ cnew = c_new.data();
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const T ig = sigmoid<T>(xr[j] + hr[j]), fg = sigmoid<T>(xr[H + j] + hr[H + j]);
          const T gg = tanh_sat<T>(xr[2 * H + j] + hr[2 * H + j]), og = sigmoid<T>(xr[3 * H + j] + hr[3 * H + j]);
          const T cn = fg * cv[j] + ig * gg;
          scr[j] = cv[j]; sact[j] = ig; sact[H + j] = fg; sact[2 * H + j] = og; sact[3 * H + j] = gg; scand[j] = cn;
          cnew[j] = cn;
          yv[j] = og * tanh_sat<T>(cn);
        }
      } else {
        T* __restrict__ scand = (save ? first_p : scratch_p) + so * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const T hn = tanh_sat<T>(xr[j] + hr[j]);
          scand[j] = hn;
          yv[j] = hn;
        }
      }
      if (gated) {
        const T* __restrict__ gxr = gate_x_p + o * H;
        // An absent gate weight reads as zeros: a conditional read of a null pointer inside a vector loop
        // becomes a masked load that AVX-512 cores serve through a slow fault-suppression assist.
        const T* __restrict__ gw = gate_w_p ? gate_w_p + g * H : zero_row.data();
        T* __restrict__ ar = a_p + o * H;
        for (int64_t j = 0; j < H; ++j) {
          const T a = gxr[j] + gw[j] * hv[j];
          ar[j] = a;
          if (!(a > T(0))) {
            yv[j] = hv[j];
            if (lstm) c_new[j] = cv[j];
          }
        }
      }
      std::copy(yv, yv + H, hv);
      if (lstm) std::copy(c_new.begin(), c_new.end(), cv);
    }
  }
  std::vector<Tensor> out{y, h, c, s_all};
  if (gated) out.push_back(a_all);
  if (save) {
    out.push_back(z_all.view({steps, G, B, W}));
    out.push_back(u_all.view({steps, G, B, rank}));
    out.push_back(m_all.view({steps, G, B, W}));
    out.push_back(first);
    if (cell != Cell::kElman) { out.push_back(second); out.push_back(third); }
  }
  return out;
}


}  // namespace

std::vector<Tensor> routed_forward(std::string cell, Tensor x, Tensor h, OptTensor c, OptTensor alive,
                                   std::vector<bool> resets, std::vector<Tensor> w_ih_t, Tensor b_ih,
                                   std::vector<Tensor> w_hh_t, Tensor b_hh, Tensor scale, Tensor bias, Tensor down,
                                   Tensor up, int64_t k_in, int64_t k_h, OptTensor gate_x, OptTensor gate_w,
                                   bool save) {
  DISPATCH(x, routed_forward_impl<scalar>(cell_of(cell), x, h, c, alive, resets, w_ih_t, b_ih, w_hh_t, b_hh, scale,
                                          bias, down, up, k_in, k_h, gate_x, gate_w, save))
}


}  // namespace sparsernn
