"""Run under mpiexec by tests/test_distributed.py with CMLP_MPI_TIMEOUT set:
rank 1 stops answering after its first epoch (it sleeps in a callback, as a
host cut off from the others would look to them), so rank 0 waits in a
collective. The step watchdog must end the job instead."""
import time

import numpy as np
from mpi4py import MPI

from cmlp import Network

comm = MPI.COMM_WORLD
rng = np.random.default_rng(0)
X = rng.standard_normal((64, 5))
y = rng.integers(0, 3, 64)


def stall(history):
    if comm.rank == 1:
        time.sleep(600)


Network([5, 4, 3], seed=0).fit(X, y, comm=comm, epochs=50, batch_size=8, verbose=0,
                               on_epoch_end=stall)
print("rank", comm.rank, "finished", flush=True)
