// The GEMMs of the fused loops, for their small shapes: the recurrent step (a few rows: the batch;
// K and N: a few hundred) and, with A read transposed, a layer's weight gradient over a short
// sequence (K: the sequence's rows). ATen's bmm spends ~30 % of such a call on dispatch and packing;
// here each block of MB rows x NV vectors of columns keeps its sums in registers while B streams
// through it once.
// Written with GCC / Clang vector extensions, so it compiles to whatever SIMD the target has
// (-march=native: AVX2 on the machines we build on). Tested through the fused backend's tests,
// which compare every output and gradient with the reference backend.
#pragma once

#include <cstdint>
#include <cstring>

namespace sparsernn {

template <typename T>
struct SmallGemm {
  static constexpr int kBytes = 32;
  static constexpr int L = kBytes / sizeof(T);  // lanes per vector
  typedef T V __attribute__((vector_size(kBytes)));

  static inline V load(const T* p) { V v; std::memcpy(&v, p, sizeof(V)); return v; }
  static inline void store(T* p, V v) { std::memcpy(p, &v, sizeof(V)); }

  // Element (r, k) of A: row-major (r * lda + k), or, with AT, stored transposed (k * lda + r).
  template <bool AT>
  static inline T a_at(const T* A, int64_t lda, int r, int64_t k) { return AT ? A[k * lda + r] : A[r * lda + k]; }

  // C[0:MB, j0:j0 + NV * L] = A[0:MB, :] @ B[:, j0:j0 + NV * L].
  template <int MB, int NV, bool AT>
  static inline void block(const T* __restrict__ A, int64_t lda, const T* __restrict__ B, int64_t ldb,
                           T* __restrict__ C, int64_t ldc, int64_t K, int64_t j0) {
    V acc[MB][NV];
#pragma GCC unroll 8
    for (int r = 0; r < MB; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = V{};
    for (int64_t k = 0; k < K; ++k) {
      V b[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) b[v] = load(B + k * ldb + j0 + v * L);
#pragma GCC unroll 8
      for (int r = 0; r < MB; ++r) {
        const T a = a_at<AT>(A, lda, r, k);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[r][v] += a * b[v];
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < MB; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) store(C + r * ldc + j0 + v * L, acc[r][v]);
  }

  // MB rows of C, all N columns: wide blocks, then one-vector blocks, then scalar leftovers.
  template <int MB, int NV, bool AT>
  static inline void rows(const T* A, int64_t lda, const T* B, int64_t ldb, T* C, int64_t ldc, int64_t K,
                          int64_t N) {
    int64_t j0 = 0;
    for (; j0 + NV * L <= N; j0 += NV * L) block<MB, NV, AT>(A, lda, B, ldb, C, ldc, K, j0);
    for (; j0 + L <= N; j0 += L) block<MB, 1, AT>(A, lda, B, ldb, C, ldc, K, j0);
    for (int r = 0; r < MB; ++r)
      for (int64_t j = j0; j < N; ++j) {
        T s = T(0);
        for (int64_t k = 0; k < K; ++k) s += a_at<AT>(A, lda, r, k) * B[k * ldb + j];
        C[r * ldc + j] = s;
      }
  }

  // C (M, N) = A (M, K) @ B (K, N), B's and C's rows ldb / ldc apart, columns contiguous; A row-major
  // with rows lda apart, or with AT stored transposed, as (K, M) with rows lda apart.
  template <bool AT = false>
  static void run(const T* A, int64_t lda, const T* B, int64_t ldb, T* C, int64_t ldc, int64_t M, int64_t K,
                  int64_t N) {
    const auto shift = [&](int64_t i) { return AT ? A + i : A + i * lda; };  // A from its row i
    int64_t i = 0;
    for (; i + 8 <= M; i += 8) rows<8, 1, AT>(shift(i), lda, B, ldb, C + i * ldc, ldc, K, N);
    const T* a = shift(i);
    T* c = C + i * ldc;
    switch (M - i) {  // at least ~8 independent sums per block, so the FMA latency stays hidden
      case 7: rows<7, 1, AT>(a, lda, B, ldb, c, ldc, K, N); break;
      case 6: rows<6, 1, AT>(a, lda, B, ldb, c, ldc, K, N); break;
      case 5: rows<5, 1, AT>(a, lda, B, ldb, c, ldc, K, N); break;
      case 4: rows<4, 2, AT>(a, lda, B, ldb, c, ldc, K, N); break;
      case 3: rows<3, 2, AT>(a, lda, B, ldb, c, ldc, K, N); break;
      case 2: rows<2, 4, AT>(a, lda, B, ldb, c, ldc, K, N); break;
      case 1: rows<1, 4, AT>(a, lda, B, ldb, c, ldc, K, N); break;
      default: break;
    }
  }
};

// out[g] = a[g] @ b[g] for g < G: a[g] (M, K) with rows lda apart, groups a_group apart; b (G, K, N)
// and out (G, M, N) contiguous.
template <typename T>
inline void group_gemm(const T* a, int64_t a_group, int64_t lda, const T* b, T* out, int64_t G, int64_t M,
                       int64_t K, int64_t N) {
  for (int64_t g = 0; g < G; ++g)
    SmallGemm<T>::run(a + g * a_group, lda, b + g * K * N, N, out + g * M * N, N, M, K, N);
}

}  // namespace sparsernn
