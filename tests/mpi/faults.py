"""Run under mpiexec by tests/test_faults.py: one fault on one rank of a
running data-parallel fit (issue 19, item 1), or ranks given different data
(item 2). Each fault prints "fault at <time.monotonic()>" just before it
happens, so the test can measure how long the job takes to end after it.

    faults.py CASE [ARG]

callback-rank-1, callback-rank-0: a callback raises at the end of epoch 3.
first-step-rank-1: a callback raises after the first steps of epoch 1.
mid-epoch-rank-1: a callback raises halfway through epoch 2.
validation-rank-1: rank 1's validation pass raises in epoch 2.
checkpoint-rank-0: rank 0 checkpoints to ARG, in a directory that does not
    exist (refused before training) or on a full disk (fails in epoch 1).
sigint-rank-1, sigterm-rank-1, sigkill-rank-1: rank 1 gets the signal at the
    end of epoch 3 (a Ctrl-C, a kill, a kill -9 of that rank only).
    sigkill-rank-1 CHECKPOINT: with rank 0 checkpointing, in a 6-epoch run.
resume CHECKPOINT OUT, whole OUT: continue that run to epoch 6, or run all 6
    epochs uninterrupted; rank 0 saves the parameters to OUT (.npy).
long: no fault; rank 0 prints "training" in epoch 2 (the test signals mpiexec).
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


SIGNALS = {"sigint": signal.SIGINT, "sigterm": signal.SIGTERM, "sigkill": signal.SIGKILL}


class FaultIn3(Callback):
    def on_epoch_end(self, run, record):
        if record["epoch"] == 3:
            fault()
            if case.startswith("callback"):
                raise RuntimeError(f"a callback failed on rank {comm.rank}")
            os.kill(os.getpid(), SIGNALS[case.split("-")[0]])
        return False


class FaultInSteps(Callback):
    """Raises after the first span of epoch 1, or halfway through epoch 2."""
    wants_batches = True

    def on_batches_end(self, run, rows):
        epoch, done = run.epoch, run.position["rows_done"]
        if (case.startswith("first-step") and epoch == 1) or (
                case.startswith("mid-epoch") and epoch == 2 and done >= run.n_rows // 2):
            fault()
            raise RuntimeError(f"a step failed on rank {comm.rank} (epoch {epoch}, "
                               f"{done} rows done)")


class Announce(Callback):
    def on_epoch_end(self, run, record):
        if record["epoch"] == 2:
            print("training", file=sys.stderr, flush=True)
        return False


callbacks, checkpoint, validation_split = [], None, 0.0
target = case.rsplit("-rank-", 1)[1] if "-rank-" in case else None
mine = target is not None and int(target) == comm.rank
if mine and case.startswith(("callback", "sig")):
    callbacks.append(FaultIn3())
if mine and case.startswith(("first-step", "mid-epoch")):
    callbacks.append(FaultInSteps())
if case == "long" and comm.rank == 0:
    callbacks.append(Announce())
if case == "checkpoint-rank-0" and comm.rank == 0:
    checkpoint = sys.argv[2]
    fault()                       # the first checkpoint write fails, after epoch 1
epochs = 100_000 if case == "long" else 1000
if case == "sigkill-rank-1" and len(sys.argv) > 2:
    epochs = 6
    checkpoint = sys.argv[2] if comm.rank == 0 else None
if case in ("resume", "whole"):
    if case == "resume":
        net, _ = Network.resume(sys.argv[2], X, y, comm=comm, verbose=0)
    else:
        net = Network([20, hidden, 3], seed=0)
        net.fit(X, y, comm=comm, epochs=6, batch_size=32, verbose=0)
    if comm.rank == 0:
        np.save(sys.argv[-1], net.parameters)
    sys.exit(0)
net = Network([20, hidden, 3], seed=0)
if case == "validation-rank-1":
    validation_split = 0.1
    if comm.rank == 1:
        evaluate, calls = net._evaluate, []

        def failing_evaluate(*args, **kwargs):
            calls.append(1)
            if len(calls) == 3:                 # the reference loss, epoch 1, epoch 2
                fault()
                raise RuntimeError("validation failed on rank 1")
            return evaluate(*args, **kwargs)
        net._evaluate = failing_evaluate
try:
    net.fit(X, y, comm=comm, epochs=epochs, batch_size=32,
            verbose=0, callbacks=callbacks, checkpoint=checkpoint,
            validation_split=validation_split)
except RanksDisagree as exc:
    print(f"rank {comm.rank} refused: {exc}", flush=True)
    sys.exit(0)
print(f"rank {comm.rank} finished", flush=True)
