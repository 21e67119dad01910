/* One-row kernels of cmlp's linear layer, compiled once per x86-64 ISA level.
 *
 * Design
 * ------
 * A single row (one-sample predict, batch-1 SGD) is a matrix-vector product
 * and a rank-1 update: it reads (and the update writes) the whole weight
 * matrix once, so its speed is the speed of that pass. Built for the baseline
 * ISA (SSE2), the loops below move 4 floats per instruction; on a CPU with
 * AVX-512 they move 16 and run at the cache bandwidth (784 x 128 float32
 * weights from L2, measured: forward 3.8 us instead of 7.8 us, update 4.9 us
 * instead of 14 us). GCC's target_clones compiles each function for
 * x86-64-v4 (AVX-512), x86-64-v3 (AVX2 + FMA) and the baseline, and the
 * dynamic loader picks one per CPU (ifunc). Cython cannot attach a function
 * attribute, hence this header; everything else stays in _kernels.pyx.
 *
 * Results do not depend on the clone that runs: the loops are elementwise, or
 * reductions in a fixed order (eight partial sums), and setup.py builds with
 * -ffp-contract=off so no clone fuses a multiply-add the others round twice.
 *
 * Zero inputs are skipped: 0 * w adds exactly nothing for the finite weights
 * cmlp keeps (most MNIST pixels, half of ReLU outputs), so one kernel serves
 * sparse and dense rows.
 *
 * This file defines the float (suffix _f) and double (_d) versions by
 * including _row_kernels_impl.h twice.
 */
#ifndef CMLP_ROW_KERNELS_H
#define CMLP_ROW_KERNELS_H

#include <stddef.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(CMLP_NO_CLONES)
#define CMLP_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CMLP_CLONES
#endif

#define CMLP_T float
#define CMLP_NAME(name) name##_f
#include "_row_kernels_impl.h"
#undef CMLP_T
#undef CMLP_NAME

#define CMLP_T double
#define CMLP_NAME(name) name##_d
#include "_row_kernels_impl.h"
#undef CMLP_T
#undef CMLP_NAME

#endif
