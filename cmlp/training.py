"""A training run: epochs of mini-batches in C, with everything around them.

Design
------
* `prepare_data` validates the data once (cmlp._validation) and splits off
  the validation rows; `TrainingRun` then owns the run: the epoch loop,
  shuffling, the learning-rate schedule, the per-epoch record and the
  callbacks (cmlp.callbacks). `Network.fit` is argument handling plus one
  `TrainingRun(...).run()`.
* The C side is one cmlp._stepper.BatchStepper per run: it owns the batch
  scratch, the optimizer's state and counters, and runs the batches of an
  epoch (or of a part of one) without the GIL.
* Counters live in the stepper while it runs and are copied back to the
  network and optimizer after every C call, also when the call stops
  early: after Ctrl-C or an error, parameters, optimizer state and counters
  describe the same point, the end of the last completed batch.
* A diverged epoch raises TrainingDiverged (a ValueError) and puts the
  network back where that epoch started (parameters, optimizer state and
  counters alike): a fit
  never returns or leaves behind NaN/inf, nor a finite but exploded model.
  Diverged means a non-finite loss or parameters, or an epoch's training
  loss above divergence_factor (default DIVERGENCE_FACTOR) x max(1, the
  loss the network had when the run began, on its first REFERENCE_ROWS rows). No sane run comes
  near: at lr=1e3 on MNIST the first epoch's loss is ~1e33.
* `fit_network` is Network.fit's body: it validates fit's arguments (one
  dict, by the names of fit's parameters) and builds the run.
* `position` says how far the epoch in progress got (rows done, the loss and
  hit sums so far, the shuffling state that drew its order), so a
  checkpoint written on Ctrl-C resumes mid-epoch, bit-identically.
"""
from __future__ import annotations

import time
import warnings

import numpy as np

from cmlp._engine import is_finite
from cmlp._layout import REGRESSION_OUTPUTS, split_seed
from cmlp._ranks import fingerprint
from cmlp._stepper import BatchStepper
from cmlp._threads import resolve
from cmlp._validation import check_number, positive_int
from cmlp.callbacks import Callback, Checkpoint, EarlyStopping, EpochEnd, PrintEpochs, ProgressBar
from cmlp.history import History
from cmlp.optimizers import optimizer_for
from cmlp.schedules import make_schedule

# With a callback that reports progress within epochs, an epoch runs as
# about this many C calls of whole batches (same batches, same result).
CALLS_PER_EPOCH = 100


def total_weight(weights, n):
    """The sum of the sample weights (float64), or n when there are none."""
    return float(weights.sum(dtype=np.float64)) if weights.size else n


def shorthand_callbacks(early_stopping, patience, min_delta, checkpoint, checkpoint_metadata,
                        progress, verbose, on_epoch_end):
    """The callbacks fit's keyword arguments stand for."""
    callbacks = [EarlyStopping(patience, min_delta)] if early_stopping else []
    if checkpoint is not None:
        callbacks.append(Checkpoint(checkpoint, checkpoint_metadata))
    if progress:
        callbacks.append(ProgressBar())
    if verbose:
        callbacks.append(PrintEpochs())
    if on_epoch_end is not None:
        callbacks.append(EpochEnd(on_epoch_end))
    return callbacks


def prepare_data(net, X, y, sample_weight, class_weight, validation_data, validation_split):
    """((X, labels, targets, weights), validation tuple or None), validated.

    The unused one of labels/targets and absent weights are empty arrays.
    """
    X, labels, targets = net._check_Xy(X, y)
    weights = net._check_weights(sample_weight, class_weight, labels, X.shape[0])
    if isinstance(validation_split, bool) or not 0 <= validation_split < 1:
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}")
    if validation_data is not None and validation_split:
        raise ValueError("give validation_data or validation_split, not both")
    data, val = (X, labels, targets, weights), None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("validation_data must be (X_val, y_val) or (X_val, y_val, w_val)")
        val = net._check_Xy(*validation_data[:2], names=("X_val", "y_val"))
        w_val = validation_data[2] if len(validation_data) == 3 else None
        val = val + (net._check_weights(w_val, None, val[1], val[0].shape[0], "w_val"),)
    elif validation_split:
        data, val = _split(data, validation_split, net._seed_entropy)
    return data, val


def _split(data, fraction, seed):
    """(training part, validation part) of data, drawn from the split seed."""
    n = data[0].shape[0]
    n_val = int(round(fraction * n))
    if n_val < 1 or n_val >= n:
        raise ValueError(f"validation_split={fraction} leaves no validation "
                         f"or no training rows out of {n}")
    order = np.random.default_rng(split_seed(seed)).permutation(n)
    held, kept = np.sort(order[:n_val]), np.sort(order[n_val:])
    # Empty arrays (absent labels, targets or weights) stay empty.
    train = tuple(a[kept] if a.size else a for a in data)
    val = tuple(a[held] if a.size else a for a in data)
    weights = data[3]
    if weights.size and not (train[3].sum() > 0 and val[3].sum() > 0):
        raise ValueError("validation_split leaves training or validation rows whose "
                         "sample weights sum to 0")
    return train, val


DIVERGENCE_FACTOR = 1e6
# The other usual cause of a divergence, named in its message (issue 20).
SCALE_HINT = (", or the inputs are far from unit scale: standardize them (e.g. with "
              "scikit-learn's StandardScaler, or X / 255 for pixels)")
REFERENCE_ROWS = 1024


class TrainingDiverged(ValueError):
    """Training diverged (a NaN/inf loss or parameters, or a loss above
    divergence_factor times the initial one); the network is back where the
    failing epoch started. A ValueError, so `except ValueError` catches it.
    In a data-parallel run every rank decides it alike and raises it."""


class TrainingRun:
    """One call of fit: `epochs` epochs of `optimizer` steps over `data`.

    Attributes callbacks may read: network, history, epochs, epoch (the one
    in progress or last done), completed_epochs, optimizer, schedule,
    validation, n_rows, position, early_stopping (the EarlyStopping callback
    or None), config (the run's settings, as checkpoints store them),
    resume_best.
    """

    def __init__(self, network, data, *, validation, epochs, batch_size, optimizer, schedule,
                 shuffle, callbacks=(), gradient_hook=None, history=None, initial_epoch=0,
                 config=None, divergence_factor=DIVERGENCE_FACTOR, threads=1):
        self.network, self.validation = network, validation
        self.epochs, self.optimizer, self.schedule = epochs, optimizer, schedule
        self.shuffle = shuffle
        self.divergence_factor = np.inf if divergence_factor is None else divergence_factor
        self.history = History() if history is None else history
        self.completed_epochs = self.epoch = initial_epoch
        self.config = config or {}
        callbacks = list(callbacks)
        for callback in callbacks:
            if not isinstance(callback, Callback):
                raise TypeError(f"callbacks must be cmlp.callbacks.Callback objects, "
                                f"got {callback!r}")
        # Early stopping decides first; then the others see its verdict's epoch.
        stoppers = [c for c in callbacks if isinstance(c, EarlyStopping)]
        if len(stoppers) > 1:
            raise ValueError("give at most one EarlyStopping callback")
        self.early_stopping = stoppers[0] if stoppers else None
        if self.early_stopping is not None and validation is None:
            raise ValueError("early stopping needs validation_data or validation_split")
        self.callbacks = stoppers + [c for c in callbacks if c not in stoppers]
        # Only a checkpoint written mid-epoch needs the shuffling state that
        # drew the epoch's order; capturing it costs ~25 us an epoch for a
        # RandomState (scikit-learn's order), a fifth of a small set's epoch.
        self.keeps_epoch_rng = any(isinstance(c, Checkpoint) for c in self.callbacks)
        self.data, self.n_rows = data, data[0].shape[0]
        self.batch_size = min(batch_size, self.n_rows)
        # The epoch's row count and weight total (the record's denominators).
        self.epoch_rows = self.n_rows
        self.epoch_weight = total_weight(data[3], self.n_rows)

        resume = network.__dict__.pop("_resume", None) or {}
        self.resume_best = resume.get("best")
        self._resumed_data = resume.get("data")
        self.position = {"rows_done": 0, "loss_sum": 0.0, "n_correct": 0, "rng": None}
        if resume.get("position"):
            self.position.update(resume["position"])

        optimizer.bind(network.parameters.size, network.dtype)
        self.stepper = BatchStepper(network._layout, network._parameters,
                                    self._gradient_buffer(), *data, self.batch_size)
        optimizer.configure(self.stepper)
        self.stepper.dropout_key = network._dropout_key
        self.stepper.batches_done = network._batches_done
        self.stepper.gradient_hook = gradient_hook
        self.stepper.threads = self.threads = threads
        self.order = np.arange(self.n_rows, dtype=np.intp)

    def run(self) -> History:
        """Train; returns the History. Raises what stops it (ValueError on a
        non-finite loss, KeyboardInterrupt on Ctrl-C, a callback's error),
        with the network at the end of the last completed batch."""
        self._check_resumed_data()
        for callback in self.callbacks:
            callback.on_train_begin(self)
        stopped = self.early_stopping is not None and self.early_stopping.stopped
        try:
            self.reference_loss = self._reference_loss()
            while not stopped and self.completed_epochs < self.epochs:
                self.epoch = self.completed_epochs + 1
                record = self._epoch()
                self.history.append(record)
                self.completed_epochs = self.epoch
                stopped = self._agree(any([callback.on_epoch_end(self, record)
                                           for callback in self.callbacks]))
        except KeyboardInterrupt as interrupt:
            for callback in self.callbacks:
                try:
                    callback.on_interrupt(self)
                except Exception as failure:      # e.g. the disk is full
                    # The interrupt is what the user must see; the failed
                    # checkpoint is told, not raised in its place.
                    message = (f"on Ctrl-C, {type(callback).__name__} failed: "
                               f"{type(failure).__name__}: {failure}")
                    if hasattr(interrupt, "add_note"):
                        interrupt.add_note(message)
                    warnings.warn(message, RuntimeWarning, stacklevel=2)
            raise
        for callback in self.callbacks:
            callback.on_train_end(self)
        return self.history

    def _gradient_buffer(self):
        """Where the steps write each batch's gradients."""
        return self.network._gradients

    def _agree(self, stop):
        """Whether to stop after this epoch (in a data-parallel run, rank 0's say)."""
        return stop

    def data_identity(self):
        """What a checkpoint stores of the training data: {"rows" (of an
        epoch, over all ranks), "width", "dtype", "fingerprint" (a CRC of a
        few rows, cmlp._ranks.fingerprint; of this rank's rows)}."""
        X = self.data[0]
        return {"rows": int(self.n_rows), "width": int(X.shape[1]), "dtype": str(X.dtype),
                "fingerprint": int(fingerprint(self.data))}

    def _check_resumed_data(self):
        """A resumed run must be on its own data: refuse data that cannot be
        (another row count or width, or fewer rows than the position within
        the epoch), warn about other rows of the same shape."""
        done = self.position["rows_done"]
        if done > self.n_rows:
            raise ValueError(f"this checkpoint was written {done} rows into an epoch, but the "
                             f"data given has {self.n_rows} rows: resume on the data of the "
                             "run that wrote it")
        saved = self._resumed_data
        if saved is None:                    # a checkpoint from before cmlp stored it
            return
        now = self.data_identity()
        for key in ("rows", "width"):
            if saved[key] != now[key]:
                raise ValueError(f"this checkpoint's run trained on {saved['rows']} rows x "
                                 f"{saved['width']} features; the data given has "
                                 f"{now['rows']} x {now['width']}: resume on the same data")
        if saved["fingerprint"] != now["fingerprint"] and self._compare_fingerprint():
            warnings.warn("the data given to resume differs from the data this checkpoint's "
                          "run trained on (same shape, other values or order in the rows "
                          "sampled): the run goes on, but it is not the run that was "
                          "interrupted", UserWarning, stacklevel=4)

    def _compare_fingerprint(self):
        return True

    def _reference_loss(self):
        """The loss the network has as the run begins, on the first rows."""
        X, labels, targets, weights = self.data
        head = min(self.n_rows, REFERENCE_ROWS)
        return self.network._evaluate(X[:head], labels[:head], targets[:head],
                                      weights[:head], self.threads)["loss"]

    def _shuffle(self):
        """Draw this epoch's order from the network's shuffling stream."""
        self.order[:] = self.network._shuffle_rng.permutation(self.n_rows)

    def _span(self, reporting):
        """Rows per C call: the whole epoch, unless a callback reports progress."""
        n_batches = -(-self.n_rows // self.batch_size)
        return (self.n_rows if not reporting
                else self.batch_size * max(1, n_batches // CALLS_PER_EPOCH))

    def _validation_record(self):
        """The validation metrics of the network as it is now."""
        return self.network._evaluate(*self.validation, threads=self.threads)

    def _epoch(self):
        """Train one epoch (or what is left of it) and return its record."""
        net, position = self.network, self.position
        rate = self.schedule(self.epoch - 1, self.epochs, self.optimizer.lr)
        start = time.perf_counter()
        if position["rng"] is not None:          # resumed mid-epoch: draw its order again
            net._shuffle_rng.bit_generator.state = position["rng"]
        elif self.keeps_epoch_rng:
            # The shuffling state that draws this epoch's order: what a
            # checkpoint written mid-epoch stores to draw it again.
            position["rng"] = net._shuffle_rng.bit_generator.state
        if self.shuffle:
            self._shuffle()
        reporting = [c for c in self.callbacks if c.wants_batches]
        span = self._span(reporting)
        start_state = self._snapshot()
        for begin in range(position["rows_done"], self.n_rows, span):
            try:
                rows = self._steps(begin, min(begin + span, self.n_rows), rate)
                if not is_finite(net.parameters.reshape(1, -1)):
                    raise ValueError(f"the parameters became non-finite in epoch {self.epoch}; "
                                     "the learning rate is probably too high for this data")
            except ValueError as exc:
                # Diverged: back to where this epoch started, everything consistent.
                self._restore(start_state)
                raise TrainingDiverged(f"{exc}{SCALE_HINT} (the network is back where epoch "
                                       f"{self.epoch} started)") from None
            for callback in reporting:
                callback.on_batches_end(self, rows)

        # Every row is visited once an epoch: the weights' total is known.
        record = {"epoch": self.epoch, "loss": position["loss_sum"] / self.epoch_weight}
        limit = self.divergence_factor * max(1.0, self.reference_loss)
        if not record["loss"] <= limit:
            self._restore(start_state)
            raise TrainingDiverged(
                f"training diverged in epoch {self.epoch}: its loss {record['loss']:.3g} is over "
                f"{self.divergence_factor:.0e} x the loss the run began with ({self.reference_loss:.3g})"
                f"; the learning rate is probably too high for this data{SCALE_HINT} (the "
                f"network is back where epoch {self.epoch} started)")
        if net.output not in REGRESSION_OUTPUTS:
            record["accuracy"] = position["n_correct"] / self.epoch_rows
        record["lr"] = rate
        record["seconds"] = time.perf_counter() - start
        if self.validation is not None:
            for key, value in self._validation_record().items():
                record["val_" + key] = value
        self.position = {"rows_done": 0, "loss_sum": 0.0, "n_correct": 0, "rng": None}
        return record

    def _snapshot(self):
        net, opt = self.network, self.optimizer
        return (net.parameters.copy(), [s.copy() for s in opt.state], opt.step,
                net._batches_done, dict(self.position))

    def _restore(self, state):
        net, opt, stepper = self.network, self.optimizer, self.stepper
        params, opt_state, step, batches, position = state
        net._parameters[:] = params
        for buffer, saved in zip(opt.state, opt_state):
            buffer[:] = saved
        opt.step = stepper.step = step
        net._batches_done = stepper.batches_done = batches
        self.position = position

    def _steps(self, begin, end, rate):
        """Run the batches of this epoch's rows order[begin:end] in C;
        returns the rows trained. Copies the counters and progress back
        however the call ends."""
        stepper, position = self.stepper, self.position
        try:
            stepper.run(self.order[begin:end], rate)
        finally:
            self.optimizer.step = stepper.step
            self.network._batches_done = stepper.batches_done
            position["rows_done"] += stepper.rows_done
            position["loss_sum"] += stepper.loss_sum
            position["n_correct"] += stepper.n_correct
        return stepper.rows_done


def fit_network(net, X, y, options, start_run=None) -> History:
    """Network.fit with its keyword arguments in `options` (a dict of fit's
    parameters by name: fit's signature is their one definition), after the
    data-parallel preliminaries (cmlp.distributed.fit) if any.
    start_run(network, data, validation, optimizer, run_arguments) makes the
    run; default: a one-process TrainingRun."""
    o = options
    epochs = positive_int(o["epochs"], "epochs", minimum=0)
    batch_size = positive_int(o["batch_size"], "batch_size")
    initial_epoch = positive_int(o["initial_epoch"], "initial_epoch", minimum=0)
    threads = resolve(o["threads"])
    opt = optimizer_for(net.optimizer, o["optimizer"], o["lr"], o["momentum"],
                        o["weight_decay"])
    schedule = make_schedule(o["schedule"])
    data, validation = prepare_data(net, X, y, o["sample_weight"], o["class_weight"],
                                    o["validation_data"], o["validation_split"])
    history = o["history"]
    if history is not None and not isinstance(history, History):
        raise TypeError("history must be a History (from load_checkpoint)")
    shorthands = shorthand_callbacks(o["early_stopping"], o["patience"], o["min_delta"],
                                     o["checkpoint"], o["checkpoint_metadata"],
                                     o["progress"], o["verbose"], o["on_epoch_end"])
    gradient_hook = o["gradient_hook"]
    if gradient_hook is not None and not callable(gradient_hook):
        raise TypeError("gradient_hook must be callable")
    divergence_factor = o["divergence_factor"]
    if divergence_factor is not None:
        divergence_factor = check_number(divergence_factor, "divergence_factor", low=1)
    config = {"epochs": epochs, "batch_size": batch_size, "shuffle": bool(o["shuffle"]),
              "schedule": schedule.config(), "validation_split": o["validation_split"],
              "early_stopping": bool(o["early_stopping"]), "patience": o["patience"],
              "min_delta": o["min_delta"]}
    if not net._training.acquire(blocking=False):
        raise RuntimeError("this network is already training (a fit or partial_fit is "
                           "running on it, in another thread or a callback)")
    try:
        arguments = dict(validation=validation, epochs=epochs, batch_size=batch_size,
                         optimizer=opt, schedule=schedule, shuffle=o["shuffle"],
                         callbacks=[*shorthands, *o["callbacks"]], history=history,
                         initial_epoch=initial_epoch, config=config,
                         divergence_factor=divergence_factor, threads=threads)
        if start_run is None:
            run = TrainingRun(net, data, gradient_hook=gradient_hook, **arguments)
        else:
            run = start_run(net, data, validation, opt, arguments)
        net.optimizer = opt
        if data[2].size:             # float targets: remember their shape for predict
            net._target_ndim = 1 if np.ndim(y) == 1 else 2
        return run.run()
    finally:
        net._training.release()
