"""Run under mpiexec by tests/test_faults.py: one fault on one rank of a
running data-parallel fit (issue 19, item 1), or ranks given different data
(item 2). Each fault prints "fault at <time.monotonic()>" just before it
happens, so the test can measure how long the job takes to end after it.

    faults.py CASE [ARG]

callback-rank-1, callback-rank-0: a callback raises in epoch 3.
checkpoint-rank-0: rank 0 checkpoints to ARG, a directory that does not exist.
sigint-rank-1: rank 1 sends itself SIGINT in epoch 3 (a Ctrl-C there only).
other-rows: rank 1 passes 900 rows where rank 0 passes 1,000.
other-net: rank 1 builds a wider hidden layer.
"""
import os
import signal
import sys
import time

import numpy as np
from mpi4py import MPI

from cmlp import Callback, Network
from cmlp._ranks import RanksDisagree

comm = MPI.COMM_WORLD
case = sys.argv[1]
rng = np.random.default_rng(0)
X = rng.standard_normal((1000, 20))
y = rng.integers(0, 3, 1000)
hidden = 32 if case == "other-net" and comm.rank == 1 else 16
if case == "other-rows" and comm.rank == 1:
    X, y = X[:900], y[:900]


def fault():
    print(f"fault at {time.monotonic()}", file=sys.stderr, flush=True)


class FaultIn3(Callback):
    def on_epoch_end(self, run, record):
        if record["epoch"] == 3:
            fault()
            if case.startswith("callback"):
                raise RuntimeError(f"a callback failed on rank {comm.rank}")
            os.kill(os.getpid(), signal.SIGINT)
        return False


callbacks, checkpoint = [], None
target = {"callback-rank-1": 1, "callback-rank-0": 0, "sigint-rank-1": 1}.get(case)
if target == comm.rank:
    callbacks.append(FaultIn3())
if case == "checkpoint-rank-0" and comm.rank == 0:
    checkpoint = sys.argv[2]
    fault()                       # the first checkpoint write fails, after epoch 1
net = Network([20, hidden, 3], seed=0)
try:
    net.fit(X, y, comm=comm, epochs=1000, batch_size=32, verbose=0, callbacks=callbacks,
            checkpoint=checkpoint)
except RanksDisagree as exc:
    print(f"rank {comm.rank} refused: {exc}", flush=True)
    sys.exit(0)
print(f"rank {comm.rank} finished", flush=True)
