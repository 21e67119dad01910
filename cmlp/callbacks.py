"""Callbacks: what a training run does besides training, as objects.

    from cmlp.callbacks import Checkpoint, EarlyStopping
    net.fit(X, y, validation_split=0.1,
            callbacks=[EarlyStopping(patience=3), Checkpoint("run.npz")])

`fit`'s keyword arguments are shorthands for these: ``early_stopping=True,
patience=, min_delta=`` is `EarlyStopping`, ``checkpoint=`` is `Checkpoint`,
``progress=True`` is `ProgressBar`, ``verbose=1`` is `PrintEpochs` and
``on_epoch_end=f`` is `EpochEnd(f)`.

A callback sees the run (cmlp.training.TrainingRun): ``run.network``,
``run.history``, ``run.epochs``, ``run.optimizer`` and so on.
"""
from __future__ import annotations

import os

import numpy as np

from cmlp._validation import non_negative_float, positive_int
from cmlp.persistence import write_checkpoint


class Callback:
    """Base class; override the hooks you need. Every hook is optional."""

    #: Whether the run should report progress within epochs (on_batches_end),
    #: which splits an epoch into ~100 C calls (same batches, same result).
    wants_batches = False

    def on_train_begin(self, run) -> None:
        """Before the first epoch (also when a run resumes)."""

    def on_batches_end(self, run, rows: int) -> None:
        """After a group of batches of `rows` rows, if `wants_batches`."""

    def on_epoch_end(self, run, record: dict) -> bool:
        """After each epoch, its record appended to run.history. Return True
        to stop training."""
        return False

    def on_interrupt(self, run) -> None:
        """On Ctrl-C (KeyboardInterrupt) mid-run, before it propagates. The
        network then holds the parameters of the last completed batch, and
        run.position says how far the epoch in progress got."""

    def on_train_end(self, run) -> None:
        """After the last epoch (not after an interrupt or an error)."""


class EarlyStopping(Callback):
    """Stop when ``val_loss`` has not improved by more than `min_delta` for
    `patience` epochs, then restore the best epoch's weights
    (``history.best_epoch``). Needs validation data."""

    def __init__(self, patience: int = 5, min_delta: float = 0.0):
        self.patience = positive_int(patience, "patience")
        self.min_delta = non_negative_float(min_delta, "min_delta")
        self.best_params = None

    def on_train_begin(self, run):
        self.best_loss, self.best_epoch, self.wait = np.inf, 0, 0
        self.best_params = run.network.parameters.copy()
        # A resumed run: replay the monitor over the epochs already done.
        for record in run.history.records:
            self._update(record["epoch"], record["val_loss"], None)
        if run.resume_best is not None:
            self.best_params[:] = run.resume_best

    @property
    def stopped(self) -> bool:
        return self.wait >= self.patience

    def _update(self, epoch, loss, params):
        if loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch, self.wait = loss, epoch, 0
            if params is not None:
                self.best_params[:] = params
        else:
            self.wait += 1

    def on_epoch_end(self, run, record):
        self._update(record["epoch"], record["val_loss"], run.network.parameters)
        return self.stopped

    def on_train_end(self, run):
        run.network._parameters[:] = self.best_params
        run.history.best_epoch = self.best_epoch


class Checkpoint(Callback):
    """Write a resumable checkpoint to `path` after every epoch, and on
    Ctrl-C with the position within the epoch (so a resumed run loses no
    finished batch). `Network.resume(path, X, y)` continues the run; the
    result is bit-identical to the run that was never interrupted.
    `metadata` (JSON-able) is stored with it."""

    def __init__(self, path, metadata: dict | None = None):
        self.path = path
        self.metadata = metadata or {}
        self.written = False         # whether this run has written the file yet

    def on_train_begin(self, run):
        # Fail now, not after a whole epoch of training (issue 19, item 6).
        directory = os.path.dirname(os.path.abspath(os.fspath(self.path)))
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"checkpoint {os.fspath(self.path)!r}: the directory "
                                    f"{directory!r} does not exist")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise PermissionError(f"checkpoint {os.fspath(self.path)!r}: the directory "
                                  f"{directory!r} is not writable")

    def _write(self, run):
        write_checkpoint(run, self.path, self.metadata)
        self.written = True

    def on_epoch_end(self, run, record):
        self._write(run)
        return False

    def on_interrupt(self, run):
        self._write(run)


class ProgressBar(Callback):
    """A tqdm bar within each epoch (``pip install "cmlp[progress]"``)."""
    wants_batches = True

    def __init__(self):
        try:
            from tqdm.auto import tqdm
        except ImportError:
            raise ImportError('progress=True shows a progress bar and needs tqdm: '
                              'pip install "cmlp[progress]" (or pip install tqdm)') from None
        self._tqdm = tqdm
        self._bar = None

    def on_batches_end(self, run, rows):
        if self._bar is None:
            self._bar = self._tqdm(total=run.n_rows, desc=f"epoch {run.epoch}/{run.epochs}",
                                   unit="sample", unit_scale=True, leave=False,
                                   mininterval=0.2, initial=run.position["rows_done"] - rows)
        self._bar.update(rows)

    def _close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_epoch_end(self, run, record):
        self._close()
        return False

    def on_interrupt(self, run):
        self._close()


class PrintEpochs(Callback):
    """Print one line per epoch (what ``verbose=1`` does)."""

    def on_epoch_end(self, run, record):
        print(format_record(record, run.epochs), flush=True)
        return False


class EpochEnd(Callback):
    """Call ``function(history)`` after each epoch (``on_epoch_end=``)."""

    def __init__(self, function):
        if not callable(function):
            raise TypeError("on_epoch_end must be callable")
        self.function = function

    def on_epoch_end(self, run, record):
        self.function(run.history)
        return False


def format_record(record: dict, epochs: int | None = None) -> str:
    """One line for an epoch record, as `fit(verbose=1)` prints it."""
    width = len(str(epochs)) if epochs else 1
    parts = [f"epoch {record['epoch']:>{width}}" + (f"/{epochs}" if epochs else "")]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        if key in record:
            parts.append(f"{key} {record[key]:.4f}")
    if "lr" in record:
        parts.append(f"lr {record['lr']:.3g}")
    parts.append(f"{record['seconds']:.2f}s")
    return "  ".join(parts)
