// The recurrent step's GEMM, for the small shapes of a fused loop (a few rows: the batch; K and N:
// a few hundred). ATen's bmm spends ~30 % of such a call on dispatch and packing; here each block of
// MB rows x NV vectors of columns keeps its sums in registers while B streams through it once.
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

  // C[0:MB, j0:j0 + NV * L] = A[0:MB, :] @ B[:, j0:j0 + NV * L].
  template <int MB, int NV>
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
        const T a = A[r * lda + k];
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
  template <int MB, int NV>
  static inline void rows(const T* A, int64_t lda, const T* B, int64_t ldb, T* C, int64_t ldc, int64_t K,
                          int64_t N) {
    int64_t j0 = 0;
    for (; j0 + NV * L <= N; j0 += NV * L) block<MB, NV>(A, lda, B, ldb, C, ldc, K, j0);
    for (; j0 + L <= N; j0 += L) block<MB, 1>(A, lda, B, ldb, C, ldc, K, j0);
    for (int r = 0; r < MB; ++r)
      for (int64_t j = j0; j < N; ++j) {
        T s = T(0);
        for (int64_t k = 0; k < K; ++k) s += A[r * lda + k] * B[k * ldb + j];
        C[r * ldc + j] = s;
      }
  }

  // C (M, N) = A (M, K) @ B (K, N); rows lda / ldb / ldc apart, columns contiguous.
  static void run(const T* A, int64_t lda, const T* B, int64_t ldb, T* C, int64_t ldc, int64_t M, int64_t K,
                  int64_t N) {
    int64_t i = 0;
    for (; i + 8 <= M; i += 8) rows<8, 1>(A + i * lda, lda, B, ldb, C + i * ldc, ldc, K, N);
    const T* a = A + i * lda;
    T* c = C + i * ldc;
    switch (M - i) {  // at least ~8 independent sums per block, so the FMA latency stays hidden
      case 7: rows<7, 1>(a, lda, B, ldb, c, ldc, K, N); break;
      case 6: rows<6, 1>(a, lda, B, ldb, c, ldc, K, N); break;
      case 5: rows<5, 1>(a, lda, B, ldb, c, ldc, K, N); break;
      case 4: rows<4, 2>(a, lda, B, ldb, c, ldc, K, N); break;
      case 3: rows<3, 2>(a, lda, B, ldb, c, ldc, K, N); break;
      case 2: rows<2, 4>(a, lda, B, ldb, c, ldc, K, N); break;
      case 1: rows<1, 4>(a, lda, B, ldb, c, ldc, K, N); break;
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
