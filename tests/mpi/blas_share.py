"""Run under mpiexec by tests/test_distributed.py: the BLAS thread cap
fit(comm=) applies while training, and its undoing."""
import json
import os

from mpi4py import MPI

from cmlp import _blas, distributed

comm = MPI.COMM_WORLD
before = _blas.blas_threads()
with distributed.blas_share(comm) as cap:
    during = _blas.blas_threads()
after = _blas.blas_threads()
ranks = comm.gather({"rank": comm.rank, "cores": len(os.sched_getaffinity(0)),
                     "before": before, "cap": cap, "during": during, "after": after}, root=0)
if comm.rank == 0:                       # one writer: ranks' lines could interleave
    print(json.dumps(ranks), flush=True)
