"""Synchronous data-parallel training over MPI: `Network.fit(..., comm=)`.

Design
------
* What Horovod and PyTorch's DDP do. At the start, rank 0's parameters,
  optimizer state, shuffle stream and dropout key are broadcast. Every step,
  each rank computes the gradient of its share of the global mini-batch
  into the flat gradient buffer (the C loop, as in one process), already
  scaled to its part of the global batch's weighted mean (the stepper's
  gradient_scale, applied to dL/dz_out: no extra pass over the buffer);
  in the gradient hook, ONE in-place Allreduce(SUM) of that one buffer adds
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
* Sharded mode (sharded=True): each rank passes its own rows (data larger
  than one node) and shuffles them locally; an epoch is
  S = ceil(total rows / batch_size) global steps and step s takes
  share(n_r, s, S) of rank r's rows, so the global batch stays batch_size.
  Its weight (the divisor of the mean) is then summed over ranks, for all
  steps of an epoch in one reduction.
* Dropout: each rank draws its masks from its own stream, derived from the
  shared seed and its rank, so they are deterministic for a given seed and
  rank count (not those of one process, whose batch is one stream).
* What decisions are taken from is the same bits on every rank: loss and
  hit sums, weights and validation metrics are reduced on rank 0 and
  broadcast (identical_sum), and the epoch record is rank 0's. So every
  History is the same, early stopping decides alike, and so does the
  divergence check: a non-finite loss on any rank travels with the
  gradient allreduce (a one-double Iallreduce beside it) and stops every
  rank at that step, which then raises TrainingDiverged like one process.
* An exception on one rank would leave the others waiting in a collective
  forever: fit(comm=) reports it and calls comm.Abort(1) instead, and no
  collective runs on the way there (the reducer is freed only when every
  rank ends alike). What the ranks must agree on (data, network,
  settings) is checked once before training, collectively (cmlp._ranks):
  a mismatch raises RanksDisagree on every rank instead of hanging.
* While a rank trains, its BLAS threads are capped at its share of the
  host's cores (blas_share): OpenBLAS's one-thread-per-core default in
  every rank oversubscribes the cores and spins.

mpi4py is an optional extra: `pip install "cmlp[mpi]"`.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
import zlib

import numpy as np

from cmlp import _blas, _ranks
from cmlp._layout import REGRESSION_OUTPUTS
from cmlp._ranks import RanksDisagree
from cmlp._reducer import GradientReducer, share
from cmlp._scale import warn_if_far_from_unit_scale
from cmlp._watchdog import StepWatchdog, configured_timeout
from cmlp.callbacks import Checkpoint
from cmlp.training import REFERENCE_ROWS, TrainingDiverged, TrainingRun, fit_network, total_weight

# Seconds a failing rank waits, after writing its traceback, before aborting.
ABORT_GRACE_SECONDS = 0.2


def mpi():
    """The mpi4py.MPI module, or ImportError naming the extra to install."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError("training with comm= needs mpi4py and an MPI library: "
                          "pip install \"cmlp[mpi]\" (mpi4py and the MPICH wheel)") from exc
    return MPI


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


def fit(network, X, y, comm, sharded, options):
    """Network.fit(..., comm=comm, sharded=sharded): `options` are fit's
    other keyword arguments, by name (see cmlp.training.fit_network)."""
    if comm is None:
        raise ValueError("sharded=True splits the data over the ranks of comm: give comm")
    mpi()
    if options["gradient_hook"] is not None:
        raise ValueError("comm= brings its own gradient hook (the allreduce): give "
                         "gradient_hook or comm, not both")
    if comm.rank != 0:          # rank 0 alone prints and writes checkpoints
        options = {**options, "verbose": 0, "progress": False, "checkpoint": None,
                   "callbacks": [c for c in options["callbacks"]
                                 if not isinstance(c, Checkpoint)]}
    warn_if_far_from_unit_scale(X)
    sharded = bool(sharded)
    timeout = configured_timeout()

    def start_run(net, data, validation, optimizer, arguments):
        optimizer.bind(net.parameters.size, net.dtype)
        # Before the first collective whose size depends on them.
        _ranks.check_agree(comm, _ranks.summary(
            net, optimizer, data, validation,
            {**arguments["config"], "initial_epoch": arguments["initial_epoch"]}, sharded))
        synchronize_state(net, optimizer, comm)
        return DataParallelRun(net, data, comm=comm, sharded=sharded, timeout=timeout,
                               **arguments)

    def train():
        synchronize_streams(network, comm)
        # The default thread count is read under the cap: each rank its share.
        with blas_share(comm):
            return fit_network(network, X, y, options, start_run)
    return abort_on_error(comm, train)


def abort_on_error(comm, fn):
    """fn(); an exception on this rank is printed and aborts every rank, so
    that none waits forever in a collective the failed one never reaches.
    Divergence is not such an exception: every rank detects it at the same
    step and raises TrainingDiverged, with the network put back; nor is
    RanksDisagree (cmlp._ranks), decided by one allgather before training."""
    try:
        return fn()
    except (TrainingDiverged, RanksDisagree):
        raise                             # decided alike on every rank: each raises it
    except BaseException as exc:          # noqa: B036 -- Ctrl-C must abort too
        if comm.size == 1:
            raise
        sys.stderr.write(f"cmlp: rank {comm.rank} of {comm.size} failed, aborting the job:\n"
                         + "".join(traceback.format_exception(exc)))
        sys.stderr.flush()
        # A moment for the launcher to forward the message: an abort kills
        # every process, and output still in a pipe can be lost with them.
        time.sleep(ABORT_GRACE_SECONDS)
        comm.Abort(1)
        raise                             # not reached: Abort ends the process


def identical_sum(comm, values):
    """The float64 sum of `values` over the ranks, the same bits on every
    rank: reduced on rank 0 and broadcast (an allreduce is free to add in a
    different order on different ranks). For the few figures decisions are
    taken from: loss and hit totals, weights, validation metrics."""
    MPI = mpi()
    values = np.ascontiguousarray(values, dtype=np.float64)
    total = np.empty_like(values)
    comm.Reduce(values, total, op=MPI.SUM, root=0)
    comm.Bcast(total, root=0)
    return total


class DataParallelRun(TrainingRun):
    """A TrainingRun whose steps are synchronous over the ranks of `comm`.

    Default mode: every rank holds the same data; position, order and
    records count the global rows. Sharded mode: rank r holds n_r rows of
    its own; an epoch is S = ceil(sum(n_r) / batch_size) steps, and step s
    takes rows share(n_r, s, S) of each rank's own order, so each rank's
    part of a global batch is in proportion to its data.
    """

    def __init__(self, network, data, *, comm, batch_size, sharded=False, timeout=0.0,
                 **kwargs):
        self.comm, self.sharded = comm, sharded
        # Ends the job when no step completes for `timeout` s (cmlp._watchdog).
        self.watchdog = StepWatchdog(comm, timeout if comm.size > 1 else 0.0)
        self.global_batch = batch_size
        self.global_weight = self.global_rows = 1.0
        self.reducer = GradientReducer(comm, network.parameters.size, network.dtype)
        super().__init__(network, data, gradient_hook=self._hook, batch_size=batch_size,
                         **kwargs)
        if comm.size > 1:
            # Each rank its own dropout stream (from the shared seed and its
            # rank): with one key, every rank's share would get the same masks.
            self.stepper.dropout_key = int(np.random.SeedSequence(
                [network._dropout_key, comm.rank]).generate_state(1, np.uint64)[0])
        if sharded:
            self.shard_rows = comm.allgather(self.n_rows)
            self.n_rows = self.epoch_rows = sum(self.shard_rows)
            self.epoch_weight = float(identical_sum(comm, [self.epoch_weight])[0])
            self.n_steps = -(-self.n_rows // self.global_batch)
            # Global rows before each step (a position within an epoch is one of these).
            self.step_starts = np.array(
                [sum(share(n, step, self.n_steps)[0] for n in self.shard_rows)
                 for step in range(self.n_steps + 1)])

    # ------------------------------------------------- what every rank agrees on

    def _gradient_buffer(self):
        return self.reducer.gradients

    def _compare_fingerprint(self):
        # Sharded: rank 0 wrote the checkpoint from its own rows.
        return not self.sharded or self.comm.rank == 0

    def run(self):
        # Freeing the reducer is a collective (MPI_Win_free, Comm_free): only
        # when every rank ends alike. A rank that fails alone must not wait
        # in it for ranks that wait for it in a step: abort_on_error ends
        # the job, which frees everything.
        try:
            with self.watchdog:
                history = super().run()
        except TrainingDiverged:
            self.reducer.free()
            raise
        self.reducer.free()
        return history

    def _hook(self, gradients, batch_weight):
        # The gradients are this rank's part of the global batch mean already
        # (stepper.gradient_scale, set per step in _steps): just add them.
        # Whether any rank's loss is non-finite travels with them, so that
        # every rank stops at the same batch.
        stepper = self.stepper
        if self.reducer.reduce(not np.isfinite(stepper.hook_loss)):
            stepper.hook_loss = np.nan
        stepper.hook_weight = self.global_weight      # per-sample decay's divisor
        stepper.hook_rows = self.global_rows          # scikit-learn's loss record

    def _reference_loss(self):
        if not self.sharded:
            return self.comm.bcast(super()._reference_loss(), root=0)
        X, weights = self.data[0], self.data[3]
        head = min(X.shape[0], REFERENCE_ROWS)
        weight = total_weight(weights[:head], head)
        loss_sum, weight = identical_sum(self.comm, [super()._reference_loss() * weight,
                                                     weight])
        return loss_sum / weight

    def _validation_record(self):
        # Each rank evaluates its share of the validation rows (default mode)
        # or its own validation rows (sharded); the sums are combined.
        X, labels, targets, weights = self.validation
        n = X.shape[0]
        lo, hi = (0, n) if self.sharded else share(n, self.comm.rank, self.comm.size)
        sums = np.zeros(4)
        if hi > lo:
            part = (X[lo:hi], labels[lo:hi], targets[lo:hi], weights[lo:hi])
            metrics = self.network._evaluate(*part, threads=self.threads)
            weight = total_weight(part[3], hi - lo)
            sums[:] = (metrics["loss"] * weight, metrics.get("accuracy", 0.0) * (hi - lo),
                       weight, hi - lo)
        loss_sum, correct, weight, rows = identical_sum(self.comm, sums)
        record = {"loss": loss_sum / weight}
        if self.network.output not in REGRESSION_OUTPUTS:
            record["accuracy"] = correct / rows
        return record

    def _epoch(self):
        record = super()._epoch()
        self.watchdog.progress()
        self._check_ranks_agree()
        # Rank 0's record (its clock) for all: every History is the same.
        return self.comm.bcast(record, root=0)

    def _check_ranks_agree(self):
        """Every rank applied the same steps to the same start, so the
        parameters are the same bits if the allreduce gives every rank the
        same sum. MPICH's does (checked with 2-5 ranks, up to 2M floats);
        MPI does not promise it. If an implementation differs, rank 0's
        state is given to all, once an epoch, so ranks never drift apart."""
        digest = zlib.crc32(self.network.parameters.view(np.uint8))
        digests = self.comm.allgather(digest)
        if len(set(digests)) > 1:
            synchronize_state(self.network, self.optimizer, self.comm)

    def _agree(self, stop):
        # Callbacks decide from the same record, but a decision one rank
        # took alone would leave the others in a collective: rank 0's holds.
        return self.comm.bcast(stop, root=0)

    def _span(self, reporting):
        # One C-side pass per epoch on every rank alike (a progress bar on
        # rank 0 alone must not split its epochs differently).
        return self.n_rows

    def _shuffle(self):
        if not self.sharded:
            return super()._shuffle()
        # One draw from the shared stream (every rank's stream stays in step,
        # as checkpoints store it), then each rank's own order of its rows.
        key = int(self.network._shuffle_rng.integers(2**63))
        self.order[:] = np.random.default_rng([key, self.comm.rank]).permutation(self.order.size)

    # ------------------------------------------------------------- the steps

    def _step_plan(self, begin, end):
        """[(this rank's rows, their weight, the global batch's weight,
        global rows done after it)] for the global rows [begin, end) of this
        epoch."""
        order, weights, comm = self.order, self.data[3], self.comm

        def weight_of(rows):
            return total_weight(weights[rows] if weights.size else weights, len(rows))
        if not self.sharded:
            plan = []
            for start in range(begin, end, self.global_batch):
                batch = order[start:min(start + self.global_batch, end)]
                lo, hi = share(len(batch), comm.rank, comm.size)
                plan.append((batch[lo:hi], weight_of(batch[lo:hi]), weight_of(batch),
                             start + len(batch)))
            return plan
        first, last = np.searchsorted(self.step_starts, [begin, end])
        steps = range(first, last)
        parts = [order[slice(*share(order.size, step, self.n_steps))] for step in steps]
        local = [weight_of(rows) for rows in parts]
        totals = identical_sum(comm, local) if local else []
        return list(zip(parts, local, totals, self.step_starts[first + 1:last + 1]))

    def _steps(self, begin, end, rate):
        stepper, position = self.stepper, self.position
        loss, hits = 0.0, 0
        rows_before, loss_before, hits_before = (position["rows_done"], position["loss_sum"],
                                                 position["n_correct"])
        rows_so_far = begin
        try:
            for rows, weight, global_weight, rows_after in self._step_plan(begin, end):
                self.global_weight = float(global_weight)
                self.global_rows, rows_so_far = float(rows_after - rows_so_far), rows_after
                # This rank's weighted mean -> its part of the global weighted mean.
                stepper.gradient_scale = weight / global_weight if global_weight > 0 else 0.0
                try:
                    if rows.size:
                        stepper.run(np.ascontiguousarray(rows), rate)
                        loss += stepper.loss_sum
                        hits += stepper.n_correct
                    else:
                        stepper.empty_step(rate)
                except ValueError:
                    raise ValueError(
                        f"the training loss became non-finite in the global batch ending at "
                        f"row {rows_after} of this epoch (on {self.comm.size} ranks); the "
                        "learning rate is probably too high for this data") from None
                self.watchdog.progress()
                # Counted as each global step completes: a checkpoint written
                # on Ctrl-C resumes after the last one (its loss sum then
                # lacks the other ranks' part of the interrupted span).
                position["rows_done"] = int(rows_after)
        finally:
            self.optimizer.step = stepper.step
            self.network._batches_done = stepper.batches_done
            position["loss_sum"], position["n_correct"] = loss_before + loss, hits_before + hits
        totals = identical_sum(self.comm, [loss, hits])
        position["loss_sum"] = loss_before + float(totals[0])
        position["n_correct"] = hits_before + int(totals[1])
        return position["rows_done"] - rows_before
