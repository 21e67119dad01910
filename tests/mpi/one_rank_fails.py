"""Run under mpiexec by tests/test_distributed.py: rank 1 passes data with a
NaN, so its fit raises before the first allreduce; the job must end (abort)
instead of leaving rank 0 waiting in a collective."""
import numpy as np
from mpi4py import MPI

from cmlp import Network

comm = MPI.COMM_WORLD
rng = np.random.default_rng(0)
X = rng.standard_normal((64, 5))
y = rng.integers(0, 3, 64)
if comm.rank == 1:
    X[7, 2] = np.nan
Network([5, 4, 3], seed=0).fit(X, y, comm=comm, epochs=50, batch_size=8, verbose=0)
print("rank", comm.rank, "finished", flush=True)
