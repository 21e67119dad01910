# cmlp's own float32 product for batched inference (see _panel_gemm.h).
from libc.stddef cimport ptrdiff_t

cdef extern from "_panel_gemm.h" nogil:
    # Floats of the packed form of a (k, n) matrix (panels of 32 columns).
    size_t cmlp_panel_size(ptrdiff_t k, ptrdiff_t n)
    # Wp (64-byte aligned, cmlp_panel_size floats) = W (k, n) in panels.
    void cmlp_pack_panels(float* Wp, const float* W, ptrdiff_t k, ptrdiff_t n)
    # Every W_l = params + w_offsets[l] (sizes[l], sizes[l + 1]) packed, as
    # n_layers pointers into one block; NULL when out of memory.
    # (ptrdiff_t in C: Py_ssize_t's type wherever Python runs.)
    float** cmlp_pack_layers(Py_ssize_t n_layers, const Py_ssize_t* sizes,
                             const Py_ssize_t* w_offsets, const float* params)
    void cmlp_free_layers(float** panels)
    # 1 where the CPU runs the kernel (AVX-512F), else 0: keep BLAS.
    int cmlp_panel_gemm_available()
    # z (m, n) = b (n) + X (m, k) @ W, W packed in Wp; relu: then ReLU in
    # place. Returns 1 when every z before ReLU is finite, else 0.
    int cmlp_panel_linear(float* z, const float* X, const float* Wp, const float* b,
                          ptrdiff_t m, ptrdiff_t k, ptrdiff_t n, int relu)
