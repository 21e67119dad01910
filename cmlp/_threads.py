"""How many threads cmlp's passes may use: `threads=` and its default.

cmlp splits a training batch, or the rows of a batched predict, over its
own worker threads (cmlp._pool); BLAS then runs one thread per call. The
default follows what the process may use and what the user already capped:

* the cores this process may run on (``os.sched_getaffinity``: taskset,
  cgroup cpusets, a batch scheduler's allocation);
* the thread count of the OpenBLAS that cmlp calls, which carries
  ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` (read at its start) and any
  later cap: threadpoolctl's ``threadpool_limits``, the limits joblib sets
  in its workers (``GridSearchCV(n_jobs=k)``), and ``fit(comm=)``'s share
  of a host's cores for each MPI rank;
* ``OPENBLAS_NUM_THREADS`` and ``OMP_NUM_THREADS`` themselves, as they were
  when cmlp was imported, where another BLAS is behind scipy.

An explicit ``threads=`` wins over all of these. Whether a given call then
uses them all depends on its size (cmlp._pool.threads_for).
"""
from __future__ import annotations

import os

import numpy as np

from cmlp import _blas
from cmlp._pool import MAX_THREADS

ENV_CAPS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


def _env_cap():
    caps = []
    for name in ENV_CAPS:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) >= 1:
            caps.append(int(value))
    return min(caps) if caps else None


# Read once, as OpenBLAS and OpenMP read them when they start: a library
# that sets them later for the processes it spawns (Dask's nanny does, in
# the parent's os.environ) caps those processes, not this one.
_ENV_CAP = _env_cap()


def available_cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def default_threads() -> int:
    """The threads cmlp uses when `threads=None`: the cores this process may
    use, capped by BLAS's thread count and the environment (see above)."""
    count = available_cores()
    blas = _blas.blas_threads()
    if blas is not None:
        count = min(count, blas)
    if _ENV_CAP is not None:
        count = min(count, _ENV_CAP)
    return max(1, min(count, MAX_THREADS))


def check_threads(threads, name="threads"):
    """`threads` as an int in [1, MAX_THREADS], or None for the default."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)):
        raise TypeError(f"{name} must be None or an int >= 1, got {threads!r}")
    if not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"{name} must be in [1, {MAX_THREADS}] (or None for the cores this "
                         f"process may use), got {threads}")
    return int(threads)


def resolve(threads) -> int:
    """An explicit thread count, checked, or the default."""
    threads = check_threads(threads)
    return default_threads() if threads is None else threads
