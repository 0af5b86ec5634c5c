// The rhythm gate's schedule a[n, j] = offset[j] + sum_k amplitude[j, k] sin(omega[k] t_n + phase[j, k])
// and its backward, for a column of time indices (sparsernn/core/update_gates.py: the reference's
// RhythmGate.schedule and the fused backend's whole-call schedule both call these, so both have the
// same bits). The forward is the formula as written, the angle w t + p rounded first, as the inference
// steppers compute it (the sum formula below rounds differently, and at time indices in the thousands
// that moves a float32 value by ~1e-4, enough to flip switches near 0); the K * H sines per time index
// are vectorised. Each row is computed by the same code whatever the number of rows, so a time index
// gives the same bits alone or among many.
#include "fused_cpu.h"

#include <cmath>

namespace sparsernn {
namespace {

template <typename T>
Tensor schedule_impl(Tensor times, Tensor omega, Tensor phase, Tensor amplitude, Tensor offset) {
  times = times.contiguous(); omega = omega.contiguous(); offset = offset.contiguous();
  const int64_t N = times.numel(), H = phase.size(0), K = phase.size(1);
  const Tensor phase_t = phase.t().contiguous(), amplitude_t = amplitude.t().contiguous();  // (K, H)
  const T* tp = times.data_ptr<T>();
  const T* wp = omega.data_ptr<T>();
  const T* pp = phase_t.data_ptr<T>();
  const T* ap = amplitude_t.data_ptr<T>();
  const T* op = offset.data_ptr<T>();
  Tensor out = at::empty({N, H}, phase.options());
  T* outp = out.data_ptr<T>();
  for (int64_t n = 0; n < N; ++n) {
    T* __restrict__ row = outp + n * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) row[j] = T(0);
    for (int64_t k = 0; k < K; ++k) {
      const T tw = tp[n] * wp[k];
      const T* __restrict__ p = pp + k * H;
      const T* __restrict__ a = ap + k * H;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) row[j] += a[j] * std::sin(tw + p[j]);
    }
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) row[j] = op[j] + row[j];
  }
  return out;
}

// Gradients of (omega (K,), phase (H, K), amplitude (H, K), offset (H,)) from grad (N, H), through
// the sum formula: per neuron and frequency the sums over n of g sin(w t), g cos(w t), g t sin(w t)
// and g t cos(w t), then the chain rule of amp (sin(w t) cos p + cos(w t) sin p).
template <typename T>
std::vector<Tensor> schedule_backward_impl(Tensor grad, Tensor times, Tensor omega, Tensor phase, Tensor amplitude) {
  grad = grad.contiguous(); times = times.contiguous(); omega = omega.contiguous(); phase = phase.contiguous();
  amplitude = amplitude.contiguous();
  const int64_t N = times.numel(), H = phase.size(0), K = phase.size(1);
  const T* gp = grad.data_ptr<T>();
  const T* tp = times.data_ptr<T>();
  const T* wp = omega.data_ptr<T>();
  std::vector<T> sums(4 * K * H, T(0));  // [S | C | TS | TC], each (K, H)
  Tensor d_offset = at::zeros({H}, phase.options());
  T* dop = d_offset.data_ptr<T>();
  for (int64_t n = 0; n < N; ++n) {
    const T t = tp[n];
    const T* __restrict__ g = gp + n * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) dop[j] += g[j];
    for (int64_t k = 0; k < K; ++k) {
      const T s = std::sin(t * wp[k]), c = std::cos(t * wp[k]), ts = t * s, tc = t * c;
      T* __restrict__ S = sums.data() + k * H;
      T* __restrict__ C = S + K * H;
      T* __restrict__ TS = C + K * H;
      T* __restrict__ TC = TS + K * H;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        S[j] += g[j] * s;
        C[j] += g[j] * c;
        TS[j] += g[j] * ts;
        TC[j] += g[j] * tc;
      }
    }
  }
  Tensor d_phase = at::empty({H, K}, phase.options()), d_amplitude = at::empty({H, K}, phase.options());
  Tensor d_omega = at::zeros({K}, phase.options());
  const T* pp = phase.data_ptr<T>();
  const T* ap = amplitude.data_ptr<T>();
  T* dpp = d_phase.data_ptr<T>();
  T* dap = d_amplitude.data_ptr<T>();
  T* dwp = d_omega.data_ptr<T>();
  for (int64_t j = 0; j < H; ++j)
    for (int64_t k = 0; k < K; ++k) {
      const T cp = std::cos(pp[j * K + k]), sp = std::sin(pp[j * K + k]), amp = ap[j * K + k];
      const T S = sums[k * H + j], C = sums[(K + k) * H + j];
      const T TS = sums[(2 * K + k) * H + j], TC = sums[(3 * K + k) * H + j];
      dap[j * K + k] = cp * S + sp * C;        // sum_n g sin(w t + p)
      dpp[j * K + k] = amp * (cp * C - sp * S);  // sum_n g amp cos(w t + p)
      dwp[k] += amp * (cp * TC - sp * TS);       // sum_n g amp t cos(w t + p)
    }
  return {d_omega, d_phase, d_amplitude, d_offset};
}

}  // namespace

Tensor rhythm_schedule(Tensor times, Tensor omega, Tensor phase, Tensor amplitude, Tensor offset) {
  DISPATCH(phase, schedule_impl<scalar>(times, omega, phase, amplitude, offset))
}

std::vector<Tensor> rhythm_schedule_backward(Tensor grad, Tensor times, Tensor omega, Tensor phase,
                                             Tensor amplitude) {
  DISPATCH(phase, schedule_backward_impl<scalar>(grad, times, omega, phase, amplitude))
}

}  // namespace sparsernn
