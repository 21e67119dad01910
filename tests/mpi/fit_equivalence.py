"""Run under mpiexec by tests/test_distributed.py: fit(comm=) on every rank,
then rank 0 compares with one process at the same global batch size and
prints one JSON line per case."""
import json
import sys

import _probe
import numpy as np
from mpi4py import MPI

from cmlp import Network

comm = MPI.COMM_WORLD
n, batch = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
X = rng.standard_normal((n, 20))
y = rng.integers(0, 4, n)
w = rng.random(n) + 0.5
for dtype in ("float32", "float64"):
    for optimizer in ("sgd", "adam"):
        for weights in (None, w):
            kwargs = dict(epochs=2, batch_size=batch, optimizer=optimizer, lr=0.05,
                          sample_weight=weights)
            net = Network([20, 16, 4], dtype=dtype, seed=3)
            history = net.fit(X, y, comm=comm, verbose=0, **kwargs)
            params = comm.gather(net.parameters.copy(), root=0)
            losses = comm.gather(history.loss, root=0)
            if comm.rank == 0:
                one = Network([20, 16, 4], dtype=dtype, seed=3)
                one_history = one.fit(X, y, verbose=0, **kwargs)
                ref = one.parameters
                print(json.dumps({
                    "dtype": dtype, "optimizer": optimizer, "weighted": weights is not None,
                    "relative": float(np.max(np.abs(params[0] - ref)) / np.max(np.abs(ref))),
                    "ranks_equal": all(np.array_equal(p, params[0]) for p in params),
                    "histories_equal": all(h == losses[0] for h in losses),
                    "loss_relative": float(np.max(np.abs(np.subtract(losses[0], one_history.loss))
                                                  / np.abs(one_history.loss)))}), flush=True)
_probe.report(comm)
