/* cmlp's own float32 product for batched inference: z = b + X @ W on AVX-512.
 *
 * Design
 * ------
 * OpenBLAS packs W (and X) on every gemm call; ONNX Runtime packs its
 * weights once, when the session loads, and its kernel then beat OpenBLAS's
 * whole first-layer gemm with its whole 784-128-64-10 forward pass
 * (bench/bench_predict.py). Here a batched forward pass packs each W once
 * per call, into panels of 32 columns (panel j holds W[p, 32j:32j+32] for
 * p = 0..k-1, contiguous, zero padded), shared by every thread's rows.
 * The kernel keeps 8 rows x 32 columns of z in 16 AVX-512 registers and
 * walks k once: per k, two aligned loads of the panel (sequential), eight
 * broadcasts of X, sixteen FMAs. No K blocking: a panel of 784 x 32 floats
 * (100 KB) streams from L2, which feeds it faster than the FMAs use it; a
 * K-blocked version (z reloaded per block) ran slower.
 * Measured on this project's 2-core AVX-512 VM, one thread, against
 * scipy's OpenBLAS sgemm on the same operands (W packed beforehand):
 * 784 -> 128 at 256 rows 1.25x faster, at 1024 and 2048 rows 1.14x;
 * 128 -> 64 at 1024 rows 1.39x; 64 -> 10 1.09x.
 *
 * - Rows in blocks of 8, the last m % 8 one at a time; columns in panels of
 *   32, the last one masked. z (m, n) and X (m, k) are row-major with
 *   leading dimensions n and k.
 * - z[i, :] = b + sum over p = 0..k-1 in order of X[i, p] * W[p, :], one
 *   FMA per term: bits do not depend on the thread count or on where a row
 *   falls in a block. They differ from OpenBLAS's (as OpenBLAS's own
 *   kernels differ from one CPU to another).
 * - ReLU and the finiteness check of z (forward_pass's all_finite) ride on
 *   the store, while z is in registers.
 * - Compiled for AVX-512F with a function attribute, used only where the
 *   CPU has it (cmlp_panel_gemm_available); elsewhere callers keep BLAS.
 */
#ifndef CMLP_PANEL_GEMM_H
#define CMLP_PANEL_GEMM_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define CMLP_PANEL 32

/* Floats of the packed form of a (k, n) matrix. */
static inline size_t cmlp_panel_size(ptrdiff_t k, ptrdiff_t n) {
    return (size_t)k * (size_t)((n + CMLP_PANEL - 1) / CMLP_PANEL * CMLP_PANEL);
}

/* Wp (cmlp_panel_size(k, n) floats, 64-byte aligned) = W (k, n) in panels. */
static inline void cmlp_pack_panels(float *Wp, const float *W, ptrdiff_t k, ptrdiff_t n) {
    ptrdiff_t j, p, width;
    for (j = 0; j < n; j += CMLP_PANEL) {
        width = n - j < CMLP_PANEL ? n - j : CMLP_PANEL;
        for (p = 0; p < k; p++) {
            float *to = Wp + j * k + p * CMLP_PANEL;
            memcpy(to, W + p * n + j, (size_t)width * sizeof(float));
            if (width < CMLP_PANEL)
                memset(to + width, 0, (size_t)(CMLP_PANEL - width) * sizeof(float));
        }
    }
}

/* Every W of a network packed: an array of n_layers pointers into one
   64-byte aligned block, W_l = params + w_offsets[l] of shape (sizes[l],
   sizes[l + 1]). NULL when out of memory (the caller keeps BLAS). Free
   with cmlp_free_layers. */
static inline float **cmlp_pack_layers(ptrdiff_t n_layers, const ptrdiff_t *sizes,
                                       const ptrdiff_t *w_offsets, const float *params) {
    size_t total = 0, at = 0;
    ptrdiff_t l;
    void *block = NULL;
    float **panels = (float **)malloc((size_t)n_layers * sizeof(float *));
    if (panels == NULL)
        return NULL;
    for (l = 0; l < n_layers; l++)
        total += cmlp_panel_size(sizes[l], sizes[l + 1]);
    if (posix_memalign(&block, 64, total * sizeof(float)) != 0) {
        free(panels);
        return NULL;
    }
    for (l = 0; l < n_layers; l++) {
        panels[l] = (float *)block + at;
        cmlp_pack_panels(panels[l], params + w_offsets[l], sizes[l], sizes[l + 1]);
        at += cmlp_panel_size(sizes[l], sizes[l + 1]);
    }
    return panels;
}

static inline void cmlp_free_layers(float **panels) {
    if (panels != NULL) {
        free(panels[0]);
        free(panels);
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) \
    && !defined(CMLP_NO_PANEL_GEMM)
#include <immintrin.h>

#define CMLP_AVX512 __attribute__((target("avx512f")))

static inline int cmlp_panel_gemm_available(void) {
    static int known = -1;
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx512f") ? 1 : 0;
    }
    return known;
}

static inline __mmask16 cmlp_lanes(ptrdiff_t columns) {
    return columns >= 16 ? (__mmask16)0xFFFF
         : columns <= 0 ? (__mmask16)0 : (__mmask16)((1u << columns) - 1u);
}

#define CMLP_ROW_DECLARE(r) __m512 c##r##0 = b0, c##r##1 = b1;
#define CMLP_ROW_FMA(r)                                             \
    x = _mm512_set1_ps(X[r * k + p]);                               \
    c##r##0 = _mm512_fmadd_ps(x, w0, c##r##0);                      \
    c##r##1 = _mm512_fmadd_ps(x, w1, c##r##1);
#define CMLP_ROW_STORE(r)                                           \
    cmlp_store(z + r * n, c##r##0, m0, relu, bad);                  \
    cmlp_store(z + r * n + 16, c##r##1, m1, relu, bad);

/* Store the lanes of c in mask: flag in *bad the ones that are NaN or
   infinite (exponent bits all ones), then with relu the lanes <= 0 as 0
   (NaN stays NaN), as _kernels.relu_forward does. */
CMLP_AVX512 static inline void cmlp_store(float *to, __m512 c, __mmask16 mask, int relu,
                                          __mmask16 *bad) {
    const __m512i exponent = _mm512_set1_epi32(0x7F800000);
    *bad |= _mm512_mask_cmpeq_epi32_mask(
        mask, _mm512_and_si512(_mm512_castps_si512(c), exponent), exponent);
    if (relu)
        c = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(c, _mm512_setzero_ps(), _CMP_LE_OQ),
                                 c, _mm512_setzero_ps());
    _mm512_mask_storeu_ps(to, mask, c);
}

/* z[0:8, 0:32] (masks m0, m1 for its two halves) from panel Wp. */
CMLP_AVX512 static inline void cmlp_panel_8x32(float *z, const float *X, const float *Wp,
                                               const float *b, ptrdiff_t k, ptrdiff_t n,
                                               __mmask16 m0, __mmask16 m1, int relu,
                                               __mmask16 *bad) {
    __m512 x, w0, w1;
    __m512 b0 = _mm512_maskz_loadu_ps(m0, b), b1 = _mm512_maskz_loadu_ps(m1, b + 16);
    ptrdiff_t p;
    CMLP_ROW_DECLARE(0) CMLP_ROW_DECLARE(1) CMLP_ROW_DECLARE(2) CMLP_ROW_DECLARE(3)
    CMLP_ROW_DECLARE(4) CMLP_ROW_DECLARE(5) CMLP_ROW_DECLARE(6) CMLP_ROW_DECLARE(7)
    for (p = 0; p < k; p++) {
        w0 = _mm512_load_ps(Wp + p * CMLP_PANEL);
        w1 = _mm512_load_ps(Wp + p * CMLP_PANEL + 16);
        CMLP_ROW_FMA(0) CMLP_ROW_FMA(1) CMLP_ROW_FMA(2) CMLP_ROW_FMA(3)
        CMLP_ROW_FMA(4) CMLP_ROW_FMA(5) CMLP_ROW_FMA(6) CMLP_ROW_FMA(7)
    }
    CMLP_ROW_STORE(0) CMLP_ROW_STORE(1) CMLP_ROW_STORE(2) CMLP_ROW_STORE(3)
    CMLP_ROW_STORE(4) CMLP_ROW_STORE(5) CMLP_ROW_STORE(6) CMLP_ROW_STORE(7)
}

/* One row: z[0, 0:32] from panel Wp. */
CMLP_AVX512 static inline void cmlp_panel_1x32(float *z, const float *X, const float *Wp,
                                               const float *b, ptrdiff_t k,
                                               __mmask16 m0, __mmask16 m1, int relu,
                                               __mmask16 *bad) {
    __m512 x, c0 = _mm512_maskz_loadu_ps(m0, b), c1 = _mm512_maskz_loadu_ps(m1, b + 16);
    ptrdiff_t p;
    for (p = 0; p < k; p++) {
        x = _mm512_set1_ps(X[p]);
        c0 = _mm512_fmadd_ps(x, _mm512_load_ps(Wp + p * CMLP_PANEL), c0);
        c1 = _mm512_fmadd_ps(x, _mm512_load_ps(Wp + p * CMLP_PANEL + 16), c1);
    }
    cmlp_store(z, c0, m0, relu, bad);
    cmlp_store(z + 16, c1, m1, relu, bad);
}

/* z (m, n) = b (n) + X (m, k) @ W, W given packed (Wp, cmlp_pack_panels),
   then with relu ReLU in place (the store: one pass over z less). Returns
   1 when every z before ReLU is finite, else 0 (all_finite's answer). */
CMLP_AVX512 static inline int cmlp_panel_linear(float *z, const float *X, const float *Wp,
                                                const float *b, ptrdiff_t m, ptrdiff_t k,
                                                ptrdiff_t n, int relu) {
    __mmask16 bad = 0;
    /* Rows outside, panels inside: 8 rows of X (25 KB at k = 784) stay in
       L1 while every panel passes, and all panels (400 KB) stay in L2.
       Panels outside streamed X from L3 once per panel: 1.05x OpenBLAS at
       1024 rows against 1.14x. */
    ptrdiff_t i, j;
    for (i = 0; i + 8 <= m; i += 8)
        for (j = 0; j < n; j += CMLP_PANEL)
            cmlp_panel_8x32(z + i * n + j, X + i * k, Wp + j * k, b + j, k, n,
                            cmlp_lanes(n - j), cmlp_lanes(n - j - 16), relu, &bad);
    for (; i < m; i++)
        for (j = 0; j < n; j += CMLP_PANEL)
            cmlp_panel_1x32(z + i * n + j, X + i * k, Wp + j * k, b + j, k,
                            cmlp_lanes(n - j), cmlp_lanes(n - j - 16), relu, &bad);
    return bad == 0;
}

#undef CMLP_ROW_DECLARE
#undef CMLP_ROW_FMA
#undef CMLP_ROW_STORE

#else  /* no AVX-512 build: callers keep BLAS */

static inline int cmlp_panel_gemm_available(void) { return 0; }

static inline int cmlp_panel_linear(float *z, const float *X, const float *Wp, const float *b,
                                    ptrdiff_t m, ptrdiff_t k, ptrdiff_t n, int relu) {
    (void)z; (void)X; (void)Wp; (void)b; (void)m; (void)k; (void)n; (void)relu;
    return 0;
}

#endif
#endif
