"""Run under mpiexec by tests/test_distributed.py: sharded, and only rank 1
holds a row so large (finite, 1e308) that its pre-activations overflow and
its loss becomes non-finite. Every rank must stop at that same step, raise
TrainingDiverged with the network back where the epoch started, and carry
on (no abort). Each rank prints one JSON line."""
import json

import numpy as np
from mpi4py import MPI

from cmlp import Network, TrainingDiverged

comm = MPI.COMM_WORLD
rng = np.random.default_rng(comm.rank)
X = rng.standard_normal((64, 20))
y = rng.integers(0, 3, 64)
if comm.rank == 1:
    X[40] = 1e308
net = Network([20, 16, 3], dtype="float64", seed=0)
net.fit(X[:8], y[:8], comm=comm, sharded=True, epochs=1, batch_size=16, verbose=0)
start = net.parameters.copy()
try:
    net.fit(X, y, comm=comm, sharded=True, epochs=3, batch_size=16, shuffle=False,
            optimizer="adam", verbose=0)
    message = None
except TrainingDiverged as exc:
    message = str(exc)
# The job goes on: one more collective, which would hang if a rank had left.
digests = comm.allgather(net.parameters.tobytes())
report = comm.gather({"rank": comm.rank, "message": message,
                      "restored": bool(np.array_equal(net.parameters, start)),
                      "ranks_equal": len(set(digests)) == 1}, root=0)
if comm.rank == 0:
    for line in report:
        print(json.dumps(line), flush=True)
