"""Build the cmlp Cython extensions.

Set CMLP_DEBUG=1 to build with bounds/wraparound checks on and without
optimisation (for chasing memory errors); the default build is -O3 with the
checks off. CMLP_SANITIZE=1 builds the release code (checks off) with
AddressSanitizer + UndefinedBehaviorSanitizer, every report fatal; run it with
LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0
(CPython itself is not instrumented); .ci/run does. No -ffast-math: the kernels must agree with the NumPy reference
(-fno-math-errno changes no result, only whether libm sets errno).
"""
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("CMLP_DEBUG", "") not in ("", "0")

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}
# -fno-math-errno lets sqrt compile to a vector instruction (libm must
# otherwise set errno on a negative input); results are bit-identical.
# -ffp-contract=off: the row kernels are compiled per ISA (_row_kernels.h);
# no clone may fuse a multiply-add that the baseline rounds twice, so every
# CPU computes the same bits.
FP_ARGS = ["-fno-math-errno", "-ffp-contract=off"]
# Release builds carry no debug info (-g0 overrides the -g in Python's
# CFLAGS): 10.8 MB of .so files shrink to ~2 MB.
COMPILE_ARGS = ["-O0", "-g", *FP_ARGS] if DEBUG else ["-O3", "-g0", *FP_ARGS]
LINK_ARGS = []
if os.environ.get("CMLP_SANITIZE", "") not in ("", "0"):
    SANITIZERS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    COMPILE_ARGS = ["-O1", "-g", "-fno-omit-frame-pointer", *FP_ARGS, *SANITIZERS]
    LINK_ARGS = SANITIZERS

# The wheel holds what users import; the benchmarks' GEMM floor
# (bench/_bench_floor.pyx) is built by bench/ on demand.
MODULES = ["_blas", "_fork_gate", "_pool", "_kernels", "_losses", "_optim", "_sparse", "_engine",
           "_layer_columns", "_entry", "_data_parallel", "_unit_split", "_feature_split",
           "_stepper", "checked_kernels._linear", "checked_kernels._elementwise",
           "checked_kernels._losses", "checked_kernels._optimizers"]
# _blas binds its dl* calls to glibc's pre-2.34 symbols (cmlp/_dl_compat.h), which
# live in libdl on older glibc: link libdl.so.2 itself (glibc 2.34+ ships only an
# empty libdl.a for -ldl), even where the linker defaults to --as-needed (no symbol
# binds to the 2.34+ stub, yet older glibc needs it loaded).
DL_LINK_ARGS = ["-Wl,--push-state,--no-as-needed", "-l:libdl.so.2", "-Wl,--pop-state"]
# Likewise _pool's pthread_create/pthread_sigmask (cmlp/_pool.h) and libpthread.
PTHREAD_LINK_ARGS = ["-pthread", "-Wl,--push-state,--no-as-needed", "-l:libpthread.so.0",
                     "-Wl,--pop-state"]
EXTRA_LINK_ARGS = {"_blas": DL_LINK_ARGS, "_pool": PTHREAD_LINK_ARGS}

extensions = [
    Extension(
        f"cmlp.{name}",
        [f"cmlp/{name.replace('.', '/')}.pyx"],
        extra_compile_args=COMPILE_ARGS,
        extra_link_args=LINK_ARGS + EXTRA_LINK_ARGS.get(name, []),
        depends=["cmlp/_row_kernels.h", "cmlp/_row_kernels_impl.h", "cmlp/_dl_compat.h",
                 "cmlp/_pool.h", "cmlp/_panel_gemm.h"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        include_dirs=[numpy.get_include()],
    )
    for name in MODULES
]

# Compile the modules side by side (pip install ., python -m build): one job per core.
setup(ext_modules=cythonize(extensions, compiler_directives=DIRECTIVES,
                            nthreads=os.cpu_count() or 1),
      options={"build_ext": {"parallel": os.cpu_count() or 1}})
