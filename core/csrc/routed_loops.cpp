// The fused backend's loops for routed layers (DS-RNN router) on a CPU: the C++ twins of
// routed_forward / routed_backward in sparsernn/core/fused_routed_loops.py (same arguments
// and results, except that the weights come transposed, one contiguous (n, k*H) tensor per
// layer), plus routed_weight_grads. Per step and sample: the router's scores of
// z = [x_t, h], the exact top-k of each side (ties to the lower channel index), then the
// kept channels' products through routed_products.h, which touch only the kept channels'
// rows of W^T; the backward's dh / dx at the kept channels are sampled dot products, and a
// weight gradient is accumulated channel by channel over the rows that kept the channel.
// Sequence tensors are time-major, (T, G, B, .). Tested against the reference backend.
#include <functional>
#include <type_traits>
#include <numeric>
#include <string>

#include "fused_cpu.h"
#include "routed_products.h"

namespace sparsernn {
namespace {

enum class Cell { kGru, kLstm, kElman };

Cell cell_of(const std::string& name) {
  if (name == "gru") return Cell::kGru;
  if (name == "lstm") return Cell::kLstm;
  TORCH_CHECK(name == "elman", "routed loops: unknown cell ", name);
  return Cell::kElman;
}

int64_t gates_of(Cell cell) { return cell == Cell::kGru ? 3 : (cell == Cell::kLstm ? 4 : 1); }

// NaN by its bits (-ffast-math may fold std::isnan to false); a NaN score ranks first, as in torch.sort.
template <typename T>
inline T rank_key(T v) {
  if constexpr (sizeof(T) == 4) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    return (u & 0x7fffffffu) > 0x7f800000u ? std::numeric_limits<T>::infinity() : v;
  } else {
    uint64_t u;
    std::memcpy(&u, &v, 8);
    return (u & 0x7fffffffffffffffull) > 0x7ff0000000000000ull ? std::numeric_limits<T>::infinity() : v;
  }
}

// Scores as unsigned integers in the same order (NaN first, as rank_key; -0 as +0): then the
// selection below is integer compares that vectorise, with no data-dependent branches.
template <typename T>
using OrderKey = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;

template <typename T>
inline OrderKey<T> order_key(T v) {
  using U = OrderKey<T>;
  constexpr U kSign = U(1) << (8 * sizeof(T) - 1);
  v = rank_key(v);
  U u;
  std::memcpy(&u, &v, sizeof(T));
  if (u == kSign) u = 0;
  return (u & kSign) ? ~u : (u | kSign);
}

// The k best channels of s[0:n] (higher score first; equal scores: the lower index first), as
// ascending indices into idx[0:k], and mask[0:n] set to 1 there and 0 elsewhere. For at most 16
// channels each channel's rank is counted directly; for a budget of at most 16 one ascending pass
// keeps the best k so far in a sorted array; otherwise the k-th largest key is found by
// nth_element on a copy of the keys (integers: no indirection, no NaN cases), then one ascending
// pass keeps the keys above it and, of those equal to it, the lowest-indexed until k are kept.
template <typename T>
void select_top_k(const T* s, int64_t n, int64_t k, int32_t* idx, T* mask, std::vector<OrderKey<T>>& keys) {
  using U = OrderKey<T>;
  if (k >= n) {
    for (int64_t j = 0; j < n; ++j) { idx[j] = int32_t(j); mask[j] = T(1); }
    return;
  }
  keys.resize(2 * n);
  U* __restrict__ key = keys.data();
  U* __restrict__ scratch = keys.data() + n;
  for (int64_t j = 0; j < n; ++j) key[j] = order_key(s[j]);
  if (n <= 16) {
    int64_t q = 0;
    for (int64_t j = 0; j < n; ++j) {
      int64_t rank = 0;
      for (int64_t i = 0; i < n; ++i) rank += key[i] > key[j] || (key[i] == key[j] && i < j);
      const bool keep = rank < k;
      mask[j] = keep ? T(1) : T(0);
      if (keep) idx[q++] = int32_t(j);
    }
    return;
  }
  if (k <= 16) {  // a small budget: the best k so far, sorted, in registers' reach; most keys fail one compare
    U best_key[16];
    int32_t best_idx[16];
    int64_t filled = 0;
    for (int64_t j = 0; j < n; ++j) {
      const U v = key[j];
      if (filled == k && !(v > best_key[k - 1])) continue;  // on a tie the earlier, lower index stays
      int64_t p = filled < k ? filled++ : k - 1;
      while (p > 0 && best_key[p - 1] < v) {
        best_key[p] = best_key[p - 1];
        best_idx[p] = best_idx[p - 1];
        --p;
      }
      best_key[p] = v;
      best_idx[p] = int32_t(j);
    }
    std::sort(best_idx, best_idx + k);
    for (int64_t j = 0; j < n; ++j) mask[j] = T(0);
    for (int64_t q = 0; q < k; ++q) { idx[q] = best_idx[q]; mask[best_idx[q]] = T(1); }
    return;
  }
  std::copy(key, key + n, scratch);
  std::nth_element(scratch, scratch + (k - 1), scratch + n, std::greater<U>());
  const U c = scratch[k - 1];
  int64_t above = 0;
#pragma omp simd reduction(+ : above)
  for (int64_t j = 0; j < n; ++j) above += key[j] > c;
  int64_t ties = k - above, q = 0;
  for (int64_t j = 0; j < n; ++j) {
    const bool keep = key[j] > c || (key[j] == c && ties-- > 0);
    mask[j] = keep ? T(1) : T(0);
    if (keep) idx[q++] = int32_t(j);
  }
}

// The ascending indices of the kept channels of one mask row (exactly k of them).
template <typename T>
inline void kept_indices(const T* mask, int64_t n, int64_t k, int32_t* idx) {
  int64_t q = 0;
  for (int64_t j = 0; j < n && q < k; ++j)
    if (mask[j] != T(0)) idx[q++] = int32_t(j);
  TORCH_CHECK(q == k, "routed loops: a mask row keeps ", q, " channels, expected ", k);
}

std::vector<Tensor> contiguous_all(const std::vector<Tensor>& ts) {
  std::vector<Tensor> out;
  for (const Tensor& t : ts) out.push_back(t.contiguous());
  return out;
}

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

// A (T, G, B, .) tensor's pointer, or nullptr when absent.
template <typename T>
inline const T* ptr_or_null(const Tensor& t) { return t.defined() ? t.data_ptr<T>() : nullptr; }

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
  Tensor ds_all = at::empty({steps, G, B, W}, opts), dpre_all = at::empty({steps, G, B, rank}, opts);
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
  T *dgxp = dgx.data_ptr<T>(), *dghp = dgh.data_ptr<T>(), *dsp = ds_all.data_ptr<T>();
  T *dprp = dpre_all.data_ptr<T>(), *dxp = dx_all.data_ptr<T>();
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
              const T k_a = (nn + zz * (h0[j] - nn) - h0[j]) * sg * (T(1) - sg);
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
      T* __restrict__ ds = dsp + o * W;
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
      T* __restrict__ dpre = dprp + o * rank;
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
  return {dh_all, dc_all, dgx, dgh, ds_all, dpre_all, dx_all, dh, dc, da_all, d_scale, d_bias,
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

std::vector<Tensor> routed_forward(std::string cell, Tensor x, Tensor h, OptTensor c, OptTensor alive,
                                   std::vector<bool> resets, std::vector<Tensor> w_ih_t, Tensor b_ih,
                                   std::vector<Tensor> w_hh_t, Tensor b_hh, Tensor scale, Tensor bias, Tensor down,
                                   Tensor up, int64_t k_in, int64_t k_h, OptTensor gate_x, OptTensor gate_w,
                                   bool save) {
  DISPATCH(x, routed_forward_impl<scalar>(cell_of(cell), x, h, c, alive, resets, w_ih_t, b_ih, w_hh_t, b_hh, scale,
                                          bias, down, up, k_in, k_h, gate_x, gate_w, save))
}

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
