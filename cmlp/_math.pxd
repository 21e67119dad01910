# Float-generic libm calls for cmlp's kernels: float32 runs expf, logf, ...
# end to end (cmlp._kernels, cmlp._losses).

from cython cimport floating
from libc.math cimport erfc, erfcf, exp, expf, log, log1p, log1pf, logf


cdef inline floating _exp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating _log(floating x) noexcept nogil:
    if floating is float:
        return logf(x)
    else:
        return log(x)


cdef inline floating _log1p(floating x) noexcept nogil:
    if floating is float:
        return log1pf(x)
    else:
        return log1p(x)


cdef inline floating _erfc(floating x) noexcept nogil:
    if floating is float:
        return erfcf(x)
    else:
        return erfc(x)
