// The routed backward recursion and weight gradients on a CPU (routed_common.h says what they
// twin): dh / dx at the kept channels are sampled dot products against the kept rows of W^T; a
// weight gradient is accumulated channel by channel over the (step, sample) rows that kept it.
#include "routed_common.h"

namespace sparsernn {
namespace {

using namespace routed;

template <typename T>
std::vector<Tensor> routed_backward_impl(Cell cell, Tensor dy, Tensor dh0, Tensor dc0, Tensor ds_ext, OptTensor alive_o,
                                         const std::vector<bool>& resets, OptTensor k_x_o, OptTensor k_h_o,
                                         OptTensor gru_saved_o, OptTensor preact_o, OptTensor gate_w_o,
                                         OptTensor da_ext_o, OptTensor carry_o,
                                         OptTensor k_c_o, OptTensor c_carry_o, OptTensor c_keep_o,
                                         OptTensor h_from_c_o, OptTensor extra_o, Tensor st_slope, Tensor z, Tensor u,
                                         Tensor mask, Tensor scale, const std::vector<Tensor>& w_ih_t_in,
                                         const std::vector<Tensor>& w_hh_t_in, Tensor up, Tensor down, int64_t k_in,
                                         int64_t k_h_count) {
  dy = dy.contiguous(); ds_ext = ds_ext.contiguous();
  const Tensor k_x = contiguous_or_none(k_x_o), k_h = contiguous_or_none(k_h_o);
  // A GRU's factors inside the step (as fused_backward.cpp's gru_backward): gru_saved = [rz | n | ghn]
  // (T, G, B, 4H), and with an update gate its pre-activations, weights and external gradients.
  const Tensor gru_saved = contiguous_or_none(gru_saved_o), preact = contiguous_or_none(preact_o);
  const Tensor gate_w = contiguous_or_none(gate_w_o), da_ext = contiguous_or_none(da_ext_o);
  const bool inline_gru = gru_saved.defined(), gated = preact.defined();
  TORCH_CHECK(inline_gru || k_x.defined(), "routed_backward: give k_x (and k_h) or gru_saved");
  st_slope = st_slope.contiguous(); z = z.contiguous(); u = u.contiguous(); mask = mask.contiguous();
  scale = scale.contiguous(); down = down.contiguous();
  up = up.transpose(1, 2).contiguous();  // (G, r, W), as in the forward
  const std::vector<Tensor> wi = contiguous_all(w_ih_t_in), wh = contiguous_all(w_hh_t_in);
  const int64_t steps = dy.size(0), G = dy.size(1), B = dy.size(2), H = dy.size(3), R = G * B;
  const int64_t W = z.size(3), I = W - H, K = gates_of(cell) * H, rank = u.size(3);
  const bool lstm = cell == Cell::kLstm, elman = cell == Cell::kElman;
  auto opts = dy.options();
  const Tensor alive = contiguous_or_none(alive_o), carry = contiguous_or_none(carry_o);
  const Tensor k_c = contiguous_or_none(k_c_o), c_carry = contiguous_or_none(c_carry_o);
  const Tensor c_keep = contiguous_or_none(c_keep_o), h_from_c = contiguous_or_none(h_from_c_o);
  const Tensor extra = contiguous_or_none(extra_o);
  Tensor dh = dh0.contiguous().clone();
  Tensor dc = lstm ? dc0.contiguous().clone() : at::empty({0}, opts);
  Tensor dh_all = at::empty({steps, G, B, H}, opts);
  Tensor dc_all = lstm ? at::empty({steps, G, B, H}, opts) : at::empty({0}, opts);
  Tensor dgx = at::empty({steps, G, B, K}, opts);
  Tensor dgh = (lstm || elman) ? dgx : at::empty({steps, G, B, K}, opts);
  Tensor dx_all = at::empty({steps, G, B, I}, opts);
  // The router's scale and bias gradients, sum over steps and samples of ds * |z| and ds: (G, W).
  Tensor d_scale = at::zeros({G, W}, opts), d_bias = at::zeros({G, W}, opts);
  // The context term's gradients, sum over steps and samples of u (x) ds and dpre (x) z: as (G, r, W).
  Tensor d_up_t = at::zeros({G, rank, W}, opts), d_down = at::zeros({G, rank, W}, opts);
  const T *dyp = dy.data_ptr<T>(), *dsep = ds_ext.data_ptr<T>(), *kxp = ptr_or_null<T>(k_x), *khp = ptr_or_null<T>(k_h);
  const T *gsp = ptr_or_null<T>(gru_saved), *ap = ptr_or_null<T>(preact), *gwp = ptr_or_null<T>(gate_w);
  const T* dep = ptr_or_null<T>(da_ext);
  Tensor da_all = gated ? at::empty({steps, G, B, H}, opts) : at::empty({0}, opts);
  T* dap = gated ? da_all.data_ptr<T>() : nullptr;
  std::vector<T> base(inline_gru ? R * H : 0);
  // Absent optional inputs read as zeros inside the vector loops (see the forward's gate weights).
  const std::vector<T> zero_row(H, T(0));
  const T* zero = zero_row.data();
  const T *crp = ptr_or_null<T>(carry), *kcp = ptr_or_null<T>(k_c), *ccp = ptr_or_null<T>(c_carry);
  const T *ckp = ptr_or_null<T>(c_keep), *hfp = ptr_or_null<T>(h_from_c), *exp_ = ptr_or_null<T>(extra);
  const T *slp = st_slope.data_ptr<T>(), *zp = z.data_ptr<T>(), *uvp = u.data_ptr<T>(), *mp = mask.data_ptr<T>();
  const T *scl = scale.data_ptr<T>(), *upp = up.data_ptr<T>(), *dnp = down.data_ptr<T>();
  T *dhp = dh.data_ptr<T>(), *dcp = lstm ? dc.data_ptr<T>() : nullptr;
  T *dhap = dh_all.data_ptr<T>(), *dcap = lstm ? dc_all.data_ptr<T>() : nullptr;
  T *dgxp = dgx.data_ptr<T>(), *dghp = dgh.data_ptr<T>(), *dxp = dx_all.data_ptr<T>();
  // One row's score and context-term gradients: reduced into d_scale, d_bias, d_up, d_down as they go.
  std::vector<T> ds_row(W), dpre_row(rank);
  T *dscp = d_scale.data_ptr<T>(), *dbip = d_bias.data_ptr<T>(), *dupp = d_up_t.data_ptr<T>();
  T* ddnp = d_down.data_ptr<T>();
  const T* alive_p = alive.defined() ? alive.data_ptr<T>() : nullptr;
  std::vector<const T*> wi_p(G), wh_p(G);
  for (int64_t g = 0; g < G; ++g) { wi_p[g] = wi[g].data_ptr<T>(); wh_p[g] = wh[g].data_ptr<T>(); }
  std::vector<int32_t> idx_in(R * k_in), idx_h(R * k_h_count);
  std::vector<T> dxk(R * k_in), dhk(R * k_h_count), dz(W), dc_old(H);
  std::vector<typename RoutedVec<T>::V> part;
  for (int64_t i = 0; i < steps; ++i) {
    const int64_t t = steps - 1 - i;
    // The gate-input gradients from the factors.
    for (int64_t r = 0; r < R; ++r) {
      const int64_t o = t * R + r;
      T* __restrict__ d = dhp + r * H;
      const T* __restrict__ yv = dyp + o * H;
      for (int64_t j = 0; j < H; ++j) d[j] += yv[j];
      std::copy(d, d + H, dhap + o * H);
      T* __restrict__ gx = dgxp + o * K;
      if (inline_gru) {
        const T* __restrict__ rzv = gsp + o * 4 * H;
        const T* __restrict__ h0 = zp + o * W + I;
        const T* __restrict__ av = gated ? ap + o * H : zero;
        const T* __restrict__ ev = gated && dep ? dep + o * H : zero;
        const T* __restrict__ wv = gated && gwp ? gwp + (r / B) * H : zero;
        T* __restrict__ gh = dghp + o * K;
        T* __restrict__ bs = base.data() + r * H;
        T* __restrict__ dav = gated ? dap + o * H : bs;  // ungated: never written
        const auto step = [&](auto gate_on) {
          constexpr bool kGated = decltype(gate_on)::value;
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) {
            const T v = d[j];
            const T rr = rzv[j], zz = rzv[H + j], nn = rzv[2 * H + j], gn = rzv[3 * H + j];
            const T k_n = (T(1) - zz) * (T(1) - nn * nn);
            const T k_r = k_n * gn * rr * (T(1) - rr);
            const T k_z = (h0[j] - nn) * zz * (T(1) - zz);
            T open = T(1), carry = zz, b = T(0);
            if constexpr (kGated) {
              const T a = av[j];
              open = a > T(0) ? T(1) : T(0);
              const T sg = sigmoid<T>(a);
              const T k_a = (nn + zz * (h0[j] - nn) - h0[j]) * sg * (T(1) - sg) * open;  // open pairs only
              dav[j] = ev[j] + v * k_a;
              carry = open * zz + (T(1) - open) + wv[j] * k_a;
              b = wv[j] * ev[j];
            }
            const T vu = v * open;
            gx[j] = vu * k_r; gx[H + j] = vu * k_z; gx[2 * H + j] = vu * k_n;
            gh[j] = vu * k_r; gh[H + j] = vu * k_z; gh[2 * H + j] = vu * k_n * rr;
            bs[j] = v * carry + b;
          }
        };
        if (gated) step(std::true_type{}); else step(std::false_type{});
      } else if (lstm) {
        const T* __restrict__ kx = kxp + o * K;
        T* __restrict__ cc = dcp + r * H;
        std::copy(cc, cc + H, dcap + o * H);
        const T* __restrict__ kc = kcp + o * H;
        const T* __restrict__ cca = ccp + o * H;
        const T* __restrict__ ck = ckp ? ckp + o * H : zero;
        for (int64_t j = 0; j < H; ++j) {
          const T e = cc[j] + d[j] * kc[j];
          gx[j] = e * kx[j];
          gx[H + j] = e * kx[H + j];
          gx[2 * H + j] = e * kx[2 * H + j];
          gx[3 * H + j] = d[j] * kx[3 * H + j];
          cc[j] = e * cca[j] + dcap[o * H + j] * ck[j];
        }
      } else {
        const T* __restrict__ kx = kxp + o * K;
        const int64_t ng = elman ? 1 : 3;
        for (int64_t q = 0; q < ng; ++q)
          for (int64_t j = 0; j < H; ++j) gx[q * H + j] = kx[q * H + j] * d[j];
        if (!elman) {
          const T* __restrict__ kh = khp + o * K;
          T* __restrict__ gh = dghp + o * K;
          for (int64_t q = 0; q < 3; ++q)
            for (int64_t j = 0; j < H; ++j) gh[q * H + j] = kh[q * H + j] * d[j];
        }
      }
      kept_indices<T>(mp + o * W, I, k_in, idx_in.data() + r * k_in);
      kept_indices<T>(mp + o * W + I, H, k_h_count, idx_h.data() + r * k_h_count);
    }
    // dx and dh at the kept channels only.
    for (int64_t g = 0; g < G; ++g) {
      const int64_t o = (t * G + g) * B;
      sampled_dots<T>(dgxp + o * K, K, idx_in.data() + g * B * k_in, B, k_in, wi_p[g], K,
                      dxk.data() + g * B * k_in, part);
      sampled_dots<T>(dghp + o * K, K, idx_h.data() + g * B * k_h_count, B, k_h_count, wh_p[g], K,
                      dhk.data() + g * B * k_h_count, part);
    }
    // Through the straight-through scores and the router, to the state read and the input.
    for (int64_t r = 0; r < R; ++r) {
      const int64_t g = r / B, b = r % B, o = t * R + r;
      const T* __restrict__ zr = zp + o * W;
      const T* __restrict__ sl = slp + o * W;  // sigmoid'(score), as the reference rounds it
      const T* __restrict__ ur = uvp + o * rank;
      T* __restrict__ ds = ds_row.data();
      std::copy(dsep + o * W, dsep + (o + 1) * W, ds);
      for (int64_t q = 0; q < k_in; ++q) {
        const int64_t j = idx_in[r * k_in + q];
        ds[j] += dxk[r * k_in + q] * zr[j] * sl[j];
      }
      for (int64_t q = 0; q < k_h_count; ++q) {
        const int64_t j = I + idx_h[r * k_h_count + q];
        ds[j] += dhk[r * k_h_count + q] * zr[j] * sl[j];
      }
      T* __restrict__ dsc = dscp + g * W;
      T* __restrict__ dbi = dbip + g * W;
#pragma omp simd
      for (int64_t w = 0; w < W; ++w) {
        dsc[w] += ds[w] * std::abs(zr[w]);
        dbi[w] += ds[w];
      }
      T* __restrict__ dpre = dpre_row.data();
      for (int64_t q = 0; q < rank; ++q)
        dpre[q] = dot<T>(ds, upp + (g * rank + q) * W, W) * (T(1) - ur[q] * ur[q]);
      for (int64_t q = 0; q < rank; ++q) {
        T* __restrict__ gu = dupp + (g * rank + q) * W;
        T* __restrict__ gd = ddnp + (g * rank + q) * W;
        const T uq = ur[q], pq = dpre[q];
#pragma omp simd
        for (int64_t w = 0; w < W; ++w) {
          gu[w] += uq * ds[w];
          gd[w] += pq * zr[w];
        }
      }
      const T* __restrict__ sc = scl + g * W;
      T* __restrict__ dzp = dz.data();
#pragma omp simd
      for (int64_t w = 0; w < W; ++w) {
        const T sgn = zr[w] > T(0) ? T(1) : (zr[w] < T(0) ? T(-1) : T(0));
        dzp[w] = ds[w] * sc[w] * sgn;
      }
      for (int64_t q = 0; q < rank; ++q) {
        const T p = dpre[q];
        const T* __restrict__ dv = dnp + (g * rank + q) * W;
#pragma omp simd
        for (int64_t w = 0; w < W; ++w) dzp[w] += p * dv[w];
      }
      for (int64_t q = 0; q < k_in; ++q) dz[idx_in[r * k_in + q]] += dxk[r * k_in + q];
      for (int64_t q = 0; q < k_h_count; ++q) dz[I + idx_h[r * k_h_count + q]] += dhk[r * k_h_count + q];
      std::copy(dz.begin(), dz.begin() + I, dxp + o * I);
      T* __restrict__ d = dhp + r * H;
      const T* __restrict__ cr = crp ? crp + o * H : nullptr;
      const T* __restrict__ hf = hfp ? hfp + o * H : nullptr;
      const T* __restrict__ ex = exp_ ? exp_ + o * H : nullptr;
      const T a = (alive_p && resets[t]) ? alive_p[t * B + b] : T(1);
      // One pass per term present (no conditional reads inside the vector loops).
      T* __restrict__ v = dzp + I;
      if (inline_gru) {
        const T* __restrict__ bs = base.data() + r * H;
        for (int64_t j = 0; j < H; ++j) v[j] += bs[j];
      }
      if (cr)
        for (int64_t j = 0; j < H; ++j) v[j] += d[j] * cr[j];
      if (hf)
        for (int64_t j = 0; j < H; ++j) v[j] += dcap[o * H + j] * hf[j];
      if (ex)
        for (int64_t j = 0; j < H; ++j) v[j] += ex[j];
      for (int64_t j = 0; j < H; ++j) d[j] = v[j] * a;
      if (lstm && a != T(1))
        for (int64_t j = 0; j < H; ++j) dcp[r * H + j] *= a;
    }
  }
  return {dh_all, dc_all, dgx, dgh, dx_all, dh, dc, da_all, d_scale, d_bias,
          d_up_t.transpose(1, 2).contiguous(), d_down};
}


template <typename T>
std::vector<Tensor> routed_weight_grads_impl(Tensor dgates, Tensor values, Tensor mask, int64_t offset, int64_t n) {
  dgates = dgates.contiguous(); values = values.contiguous(); mask = mask.contiguous();
  const int64_t steps = dgates.size(0), G = dgates.size(1), B = dgates.size(2), K = dgates.size(3);
  const int64_t W = values.size(3);
  Tensor dw = at::empty({G, K, n}, dgates.options()), dwt = at::empty({n, K}, dgates.options());
  Tensor db = at::zeros({G, 1, K}, dgates.options());
  const T *dp = dgates.data_ptr<T>(), *vp = values.data_ptr<T>(), *mp = mask.data_ptr<T>();
  std::vector<int64_t> start(n + 1);
  std::vector<int32_t> rows;
  std::vector<T> vals;
  for (int64_t g = 0; g < G; ++g) {
    std::fill(start.begin(), start.end(), 0);
    for (int64_t t = 0; t < steps; ++t)
      for (int64_t b = 0; b < B; ++b) {
        const T* m = mp + ((t * G + g) * B + b) * W + offset;
        for (int64_t j = 0; j < n; ++j) start[j + 1] += m[j] != T(0);
      }
    for (int64_t j = 0; j < n; ++j) start[j + 1] += start[j];
    rows.resize(start[n]);
    vals.resize(start[n]);
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t t = 0; t < steps; ++t)
      for (int64_t b = 0; b < B; ++b) {
        const int64_t row = (t * G + g) * B + b;
        const T* m = mp + row * W + offset;
        const T* v = vp + row * W + offset;
        for (int64_t j = 0; j < n; ++j)
          if (m[j] != T(0)) { rows[fill[j]] = int32_t(row); vals[fill[j]++] = v[j]; }
      }
    channel_outer<T>(dp, K, start.data(), rows.data(), vals.data(), n, dwt.data_ptr<T>());
    transpose_into<T>(dwt.data_ptr<T>(), dw.data_ptr<T>() + g * K * n, n, K);
    T* __restrict__ bg = db.data_ptr<T>() + g * K;
    for (int64_t t = 0; t < steps; ++t)
      for (int64_t b = 0; b < B; ++b) {
        const T* __restrict__ row = dp + ((t * G + g) * B + b) * K;
#pragma omp simd
        for (int64_t j = 0; j < K; ++j) bg[j] += row[j];
      }
  }
  return {dw, db};
}


}  // namespace

std::vector<Tensor> routed_backward(std::string cell, Tensor dy, Tensor dh, Tensor dc, Tensor ds_ext, OptTensor alive,
                                    std::vector<bool> resets, OptTensor k_x, OptTensor k_h, OptTensor gru_saved,
                                    OptTensor preact, OptTensor gate_w, OptTensor da_ext, OptTensor carry, OptTensor k_c,
                                    OptTensor c_carry, OptTensor c_keep, OptTensor h_from_c, OptTensor extra,
                                    Tensor st_slope, Tensor z, Tensor u, Tensor mask, Tensor scale,
                                    std::vector<Tensor> w_ih_t, std::vector<Tensor> w_hh_t, Tensor up, Tensor down,
                                    int64_t k_in, int64_t k_h_count) {
  DISPATCH(dy, routed_backward_impl<scalar>(cell_of(cell), dy, dh, dc, ds_ext, alive, resets, k_x, k_h, gru_saved,
                                            preact, gate_w, da_ext, carry, k_c,
                                            c_carry, c_keep, h_from_c, extra, st_slope, z, u, mask, scale, w_ih_t,
                                            w_hh_t, up, down, k_in, k_h_count))
}


std::vector<Tensor> routed_weight_grads(Tensor dgates, Tensor values, Tensor mask, int64_t offset, int64_t n) {
  DISPATCH(dgates, routed_weight_grads_impl<scalar>(dgates, values, mask, offset, n))
}


}  // namespace sparsernn
