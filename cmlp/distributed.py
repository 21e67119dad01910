"""Synchronous data-parallel training over MPI: `Network.fit(..., comm=)`.

Design
------
* What Horovod and PyTorch's DDP do. At the start, rank 0's parameters,
  optimizer state, shuffle stream and dropout key are broadcast. Every step,
  each rank computes the weighted-mean gradient of its share of the global
  mini-batch into the flat gradient buffer (the C loop, as in one process);
  the gradient hook scales it to the share's part of the global batch's
  weighted mean, and ONE in-place Allreduce(SUM) of that one buffer adds
  the parts; every rank then applies the same optimizer step.
* Default mode: every rank passes the same X, y (and sample weights). The
  global order comes from the shared shuffle stream, and rank r trains rows
  [lo, hi) of each global batch of `batch_size` rows, the first
  (batch % size) ranks one row more. N ranks therefore compute what one
  process computes at the same batch_size, up to the order of the sums.
* Python drives the global batches (one BatchStepper.run per batch): its
  few microseconds are small next to the allreduce (~110 us for the 440 KB
  gradient of 784-128-64-10 between two local ranks).
* A rank whose share of a batch is empty (a last batch with fewer rows than
  ranks) still takes part in that step with a zero gradient
  (BatchStepper.empty_step), so every rank calls every collective.
* Loss and hit sums are reduced over ranks, so every rank's History is the
  same and decisions taken from it (divergence, early stopping) agree.
* An exception on one rank would leave the others waiting in a collective
  forever: fit(comm=) reports it and calls comm.Abort(1) instead.
* While a rank trains, its BLAS threads are capped at its share of the
  host's cores (blas_share): OpenBLAS's one-thread-per-core default in
  every rank oversubscribes the cores and spins.

mpi4py is an optional extra: `pip install "cmlp[mpi]"`.
"""
from __future__ import annotations

import contextlib
import os
import sys
import traceback

import numpy as np

from cmlp import _blas
from cmlp.training import TrainingRun


def mpi():
    """The mpi4py.MPI module, or ImportError naming the extra to install."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError("training with comm= needs mpi4py and an MPI library: "
                          "pip install \"cmlp[mpi]\" (mpi4py and the MPICH wheel)") from exc
    return MPI


def share(n, rank, size):
    """(lo, hi): rank's rows of n, in order; the first n % size ranks get one more."""
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


def synchronize_streams(network, comm):
    """Give every rank rank 0's seed (validation split, dropout masks) and
    shuffle stream, before anything is drawn from them."""
    entropy, shuffle = comm.bcast((network._seed_entropy,
                                   network._shuffle_rng.bit_generator.state), root=0)
    network._seed_entropy = entropy
    network._shuffle_rng.bit_generator.state = shuffle


def synchronize_state(network, optimizer, comm):
    """Give every rank rank 0's parameters, optimizer state and counters."""
    comm.Bcast(network._parameters, root=0)
    for buffer in optimizer.state:
        comm.Bcast(buffer, root=0)
    optimizer.step, network._batches_done = comm.bcast(
        (optimizer.step, network._batches_done), root=0)


@contextlib.contextmanager
def blas_share(comm):
    """While training, cap the BLAS threads of each rank at its share of
    this host's cores. OpenBLAS starts one thread per core in every process;
    two ranks on two cores would run four spinning threads (measured: a
    2-rank MNIST epoch 11.7 s instead of 0.24 s)."""
    MPI = mpi()
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        per_host = local.Get_size()
    finally:
        local.Free()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cap = max(1, (cores or 1) // per_host)
    before = _blas.blas_threads()
    lowered = before is not None and before > cap
    if lowered:
        _blas.blas_threads(cap)
    try:
        yield cap
    finally:
        if lowered:
            _blas.blas_threads(before)


def abort_on_error(comm, fn):
    """fn(); an exception on this rank is printed and aborts every rank, so
    that none waits forever in a collective the failed one never reaches."""
    try:
        return fn()
    except BaseException as exc:          # noqa: B036 -- Ctrl-C must abort too
        if comm.size == 1:
            raise
        sys.stderr.write(f"cmlp: rank {comm.rank} of {comm.size} failed, aborting the job:\n"
                         + "".join(traceback.format_exception(exc)))
        sys.stderr.flush()
        comm.Abort(1)
        raise                             # not reached: Abort ends the process


class DataParallelRun(TrainingRun):
    """A TrainingRun whose steps are synchronous over the ranks of `comm`."""

    def __init__(self, network, data, *, comm, **kwargs):
        self.comm = comm
        self.MPI = mpi()
        self.global_weight = 1.0
        super().__init__(network, data, gradient_hook=self._hook, **kwargs)

    def _hook(self, gradients, batch_weight):
        # This rank's weighted mean -> its part of the global weighted mean.
        scale = batch_weight / self.global_weight if self.global_weight > 0 else 0.0
        gradients *= gradients.dtype.type(scale)
        self.comm.Allreduce(self.MPI.IN_PLACE, gradients, op=self.MPI.SUM)

    def _steps(self, order, rate):
        stepper, position, comm = self.stepper, self.position, self.comm
        weights = self.data[3]
        rows, loss, hits = 0, 0.0, 0
        try:
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                lo, hi = share(len(batch), comm.rank, comm.size)
                self.global_weight = (float(weights[batch].sum(dtype=np.float64))
                                      if weights.size else float(len(batch)))
                if hi > lo:
                    stepper.run(np.ascontiguousarray(batch[lo:hi]), rate)
                    loss += stepper.loss_sum
                    hits += stepper.n_correct
                else:
                    stepper.empty_step(rate)
                rows += len(batch)
        finally:
            self.optimizer.step = stepper.step
            self.network._batches_done = stepper.batches_done
        totals = comm.allreduce(np.array([loss, hits], dtype=np.float64), op=self.MPI.SUM)
        position["rows_done"] += rows
        position["loss_sum"] += float(totals[0])
        position["n_correct"] += int(totals[1])
        return rows
