"""Run under mpiexec by tests/test_distributed.py: fit(comm=, sharded=True),
each rank with rows of its own.

"equal" cases: every rank holds `per_step` rows for each of the S steps and
shuffle is off, so global step s is rows [s*per_step, (s+1)*per_step) of
every shard; one process trained on those batches laid end to end must give
the same parameters (up to the order of sums), and the validation metrics
of the ranks' validation shards combined must equal those of their union.

"uneven" case: shards of different sizes, shuffled, with a validation split
and early stopping: the ranks' parameters and histories must be identical.
Rank 0 prints one JSON line per case."""
import json
import sys

import _probe
import numpy as np
from mpi4py import MPI

from cmlp import Network

comm = MPI.COMM_WORLD
rank, size = comm.rank, comm.size
per_step, steps = int(sys.argv[1]), int(sys.argv[2])


def data(rows, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((rows, 12)), rng.integers(0, 3, rows), rng.random(rows) + 0.5


n_shard = per_step * steps
X, y, w = data(n_shard * size, 0)
Xv, yv, wv = data(10 * size, 1)
mine = slice(rank * n_shard, (rank + 1) * n_shard)
val_mine = slice(rank * 10, (rank + 1) * 10)
# One process: the global batches end to end (step s: each shard's rows of step s).
shards = np.arange(n_shard * size).reshape(size, steps, per_step)
laid_out = shards.transpose(1, 0, 2).reshape(-1)
for dtype in ("float32", "float64"):
    for optimizer in ("sgd", "adam"):
        for weighted in (False, True):
            kwargs = dict(epochs=2, batch_size=per_step * size, optimizer=optimizer, lr=0.05,
                          shuffle=False, verbose=0)
            net = Network([12, 8, 3], dtype=dtype, seed=5)
            history = net.fit(X[mine], y[mine], sample_weight=w[mine] if weighted else None,
                              validation_data=(Xv[val_mine], yv[val_mine]),
                              comm=comm, sharded=True, **kwargs)
            params = comm.gather(net.parameters.copy(), root=0)
            records = comm.gather(history.records, root=0)
            if rank == 0:
                one = Network([12, 8, 3], dtype=dtype, seed=5)
                one_history = one.fit(X[laid_out], y[laid_out],
                                      sample_weight=w[laid_out] if weighted else None,
                                      validation_data=(Xv, yv), **kwargs)
                ref = one.parameters
                print(json.dumps({
                    "case": "equal", "dtype": dtype, "optimizer": optimizer,
                    "weighted": weighted,
                    "relative": float(np.max(np.abs(params[0] - ref)) / np.max(np.abs(ref))),
                    "ranks_equal": all(np.array_equal(p, params[0]) for p in params),
                    "histories_equal": all(r == records[0] for r in records),
                    "metrics_relative": max(
                        abs(records[0][e][key] - one_history.records[e][key])
                        / abs(one_history.records[e][key])
                        for e in range(2) for key in ("loss", "accuracy", "val_loss",
                                                      "val_accuracy"))}), flush=True)

# Uneven shards (rank r holds 23 + 17 r rows), shuffled, validation split, early
# stopping, dropout; twice, to show the run is deterministic.
Xu, yu, wu = data(23 + 17 * rank, 10 + rank)
net = Network([12, 8, 3], seed=7, dropout=0.3)
history = net.fit(Xu, yu, sample_weight=wu, comm=comm, sharded=True, epochs=6, batch_size=16,
                  optimizer="adam", lr=0.01, validation_split=0.2, early_stopping=True,
                  patience=2, verbose=0)
again = Network([12, 8, 3], seed=7, dropout=0.3)
again.fit(Xu, yu, sample_weight=wu, comm=comm, sharded=True, epochs=6, batch_size=16,
          optimizer="adam", lr=0.01, validation_split=0.2, early_stopping=True, patience=2,
          verbose=0)
params = comm.gather(net.parameters.copy(), root=0)
records = comm.gather(history.records, root=0)
if rank == 0:
    print(json.dumps({"case": "uneven", "epochs": len(records[0]),
                      "repeatable": bool(np.array_equal(net.parameters, again.parameters)),
                      "ranks_equal": all(np.array_equal(p, params[0]) for p in params),
                      "histories_equal": all(r == records[0] for r in records),
                      "finite": bool(np.isfinite(params[0]).all())}), flush=True)
_probe.report(comm)
