"""The Python face of cmlp: Network validates, the C engine computes."""
import json
import os
import tempfile
import time
import zipfile

import numpy as np

from cmlp import _engine
from cmlp._layout import (ACTIVATIONS, OUTPUTS, check_architecture, check_dropout,
                          dropout_key, init_params, offsets, shuffle_seed, split_seed)
from cmlp._validation import (as_labels, as_matrix, as_sample_weight, as_targets,
                              class_weights, positive_float, positive_int)
from cmlp.history import History
from cmlp.optimizers import Optimizer, make_optimizer
from cmlp.schedules import make_schedule

FORMAT = "cmlp-model-1"


class Network:
    """A multilayer perceptron whose forward, backward and training loop run in C.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first: ``[784, 128, 64, 10]``.
    activation : str or sequence of str
        Hidden activation, one of ``relu``, ``leaky_relu`` (slope 0.01),
        ``gelu`` (exact, z Phi(z)), ``tanh``, ``sigmoid``, ``identity``, or
        one name per hidden layer.
    output : {"softmax", "identity", "sigmoid"}
        ``softmax``: softmax + cross-entropy over integer labels in [0, k).
        ``identity``: raw outputs + mean squared error, 1/(2m) sum (yhat - y)^2,
        over float targets of shape (n, k).
        ``sigmoid``: k independent sigmoids + binary cross-entropy, for
        multi-label targets of shape (n, k) in [0, 1] (usually 0/1).
    dtype : {"float32", "float64"}
        The dtype of parameters and all computation; inputs are converted to it.
    seed : int or None
        Seeds the initial weights (He for the ReLU family and gelu, Glorot
        otherwise), the mini-batch order of `fit` and the dropout masks.
        Same seed, same weights, same order, same masks.
    dropout : float or sequence of float
        Inverted dropout after each hidden layer during training: a unit is
        zeroed with this probability and the survivors are scaled by
        1 / (1 - rate). One rate for all hidden layers or one per layer;
        0 (the default) turns it off. Never applied by forward/predict.

    Attributes
    ----------
    weights, biases : tuple of ndarray
        Writable views, W of shape (n_in, n_out) and b of shape (n_out,), into
        one flat parameter buffer (`parameters`).

    One Network may serve `forward`/`predict` from several threads at once;
    `fit` and `gradients` must not run concurrently with other calls on it.
    """

    def __init__(self, sizes, activation="relu", output="softmax", dtype="float32", seed=None,
                 dropout=0.0):
        self.sizes, self.activations, self.output, self.dtype = check_architecture(
            sizes, activation, output, dtype)
        # Per layer, the last (output) one always 0; the C layout reads this array.
        self._dropout = np.zeros(len(self.sizes) - 1, dtype=np.float64)
        self.dropout = dropout
        self.seed = seed
        # The root of every random stream (equal to seed for an int seed; drawn
        # once for seed=None); saved with the model so a resumed run re-derives
        # the same streams, e.g. fit()'s validation_split.
        self._seed_entropy = np.random.SeedSequence(seed).entropy
        self._parameters = init_params(self.sizes, self.activations, seed, self.dtype)
        self._gradients = np.zeros_like(self._parameters)
        self._shuffle_rng = np.random.default_rng(shuffle_seed(seed))
        # Batches trained so far: the counter the dropout masks are drawn by.
        self._batches_done = 0
        self.optimizer = None        # set by fit(); its state carries over between fits
        self._resume_best = None     # early stopping's best weights, from a checkpoint
        w_off, b_off, n_params = offsets(self.sizes)
        self._layout = _engine.NetLayout(
            np.asarray(self.sizes, dtype=np.intp),
            np.asarray(w_off, dtype=np.intp),
            np.asarray(b_off, dtype=np.intp),
            np.asarray([ACTIVATIONS[a] for a in self.activations] + [ACTIVATIONS["identity"]],
                       dtype=np.int32),
            self._dropout, OUTPUTS[self.output], n_params)
        self.weights = self._views(self._parameters)
        self.biases = self._views(self._parameters, biases=True)
        # The dtype's specialisation of the fused C entry point, picked once:
        # dispatching on every call would cost more than a one-sample forward.
        self._forward = _engine.forward[self.dtype.name.replace("float32", "float")
                                        .replace("float64", "double")]

    def _views(self, flat, biases=False):
        w_off, b_off, _ = offsets(self.sizes)
        pairs = list(zip(self.sizes[:-1], self.sizes[1:]))
        if biases:
            return tuple(flat[b:b + o] for b, (_, o) in zip(b_off, pairs))
        return tuple(flat[w:w + i * o].reshape(i, o) for w, (i, o) in zip(w_off, pairs))

    @property
    def dropout(self):
        """The dropout rate after each hidden layer (a list; settable)."""
        return self._dropout[:-1].tolist()

    @dropout.setter
    def dropout(self, rates):
        self._dropout[:-1] = check_dropout(rates, len(self.sizes) - 2)

    @property
    def _dropout_key(self):
        return dropout_key(self._seed_entropy)

    @property
    def parameters(self):
        """The flat parameter buffer: every layer's W then b, back to back."""
        return self._parameters

    @property
    def n_features(self):
        return self.sizes[0]

    @property
    def n_outputs(self):
        return self.sizes[-1]

    def __repr__(self):
        acts = self.activations[0] if len(set(self.activations)) == 1 else self.activations
        act = f"activation={acts!r}, " if self.activations else ""
        rates = self.dropout
        drop = ""
        if any(rates):
            drop = f", dropout={rates[0] if len(set(rates)) == 1 else rates!r}"
        return (f"Network({list(self.sizes)}, {act}output={self.output!r}, "
                f"dtype={self.dtype.name!r}{drop})")

    # ------------------------------------------------------------ inputs ----

    def _check_X(self, X, name="X"):
        return as_matrix(X, self.n_features, self.dtype, name)

    def _check_Xy(self, X, y, names=("X", "y")):
        """(X, labels, targets), with the unused one of labels/targets empty."""
        X = self._check_X(X, names[0])
        n = X.shape[0]
        if self.output == "softmax":
            labels = as_labels(y, n, self.n_outputs, names[1])
            targets = np.empty((0, self.n_outputs), dtype=self.dtype)
        else:
            labels = np.empty(0, dtype=np.int32)
            targets = as_targets(y, n, self.n_outputs, self.dtype, names[1])
            if self.output == "sigmoid" and ((targets < 0).any() or (targets > 1).any()):
                raise ValueError(f"{names[1]}: a sigmoid output needs targets in [0, 1] "
                                 "(one column per label)")
        return X, labels, targets

    def _check_weights(self, sample_weight, class_weight, labels, n, name="sample_weight"):
        """Per-row weights (n,) combining sample_weight and class_weight, or
        an empty array when neither is given."""
        w = None if sample_weight is None else as_sample_weight(sample_weight, n, name)
        if class_weight is not None:
            if self.output != "softmax":
                raise ValueError("class_weight needs a softmax output (integer class labels); "
                                 "use sample_weight")
            per_class = class_weights(class_weight, labels, self.n_outputs)
            w = per_class[labels] if w is None else w * per_class[labels]
        if w is None:
            return np.empty(0, dtype=self.dtype)
        if not w.sum() > 0:
            raise ValueError("the sample weights sum to 0: nothing would be learned")
        return np.ascontiguousarray(w, dtype=self.dtype)

    def _workspace(self, rows):
        return np.empty((rows, self._layout.work_per_row), dtype=self.dtype)

    # ---------------------------------------------------------- inference ----

    def forward(self, X, out=None):
        """Network outputs for X (n, n_features): class probabilities for a
        softmax network, raw outputs for an identity one. Shape (n, k).

        `out`, if given, must be a C-contiguous (n, k) array of the network
        dtype; it is filled and returned (left partly written if X turns out
        to hold NaN/inf, which raises ValueError). Releases the GIL while
        computing; safe to call from several threads on one network.
        """
        # Fast path: an array already in the network's layout and dtype goes
        # straight to C (which checks it for NaN/inf); anything else is
        # validated and converted once.
        if not (type(X) is np.ndarray and X.dtype == self.dtype and X.ndim == 2
                and X.shape[1] == self.sizes[0] and X.shape[0] > 0 and X.flags.c_contiguous):
            X = self._check_X(X)
        shape = (X.shape[0], self.sizes[-1])
        if out is None:
            out = np.empty(shape, dtype=self.dtype)
        elif (type(out) is not np.ndarray or out.shape != shape or out.dtype != self.dtype
              or not out.flags.c_contiguous or not out.flags.writeable):
            raise ValueError(f"out must be a writable C-contiguous {self.dtype.name} array "
                             f"of shape {shape}")
        if not self._forward(self._parameters, self._layout, X, out):
            raise ValueError("X contains NaN or infinite values")
        return out

    def predict_proba(self, X, out=None):
        """Class probabilities (n, k) for a softmax network; per-label
        probabilities (n, k) for a sigmoid one."""
        if self.output == "identity":
            raise ValueError("predict_proba needs a softmax or sigmoid output; use forward "
                             "or predict")
        return self.forward(X, out=out)

    def predict(self, X):
        """Class labels (n,) for a softmax network; 0/1 label indicators
        (n, k), probability > 0.5, for a sigmoid one; outputs (n, k) for an
        identity one."""
        P = self.forward(X)
        if self.output == "softmax":
            return P.argmax(axis=1)
        return (P > 0.5).astype(np.int32) if self.output == "sigmoid" else P

    def evaluate(self, X, y, sample_weight=None):
        """Mean loss over (X, y), weighted if sample_weight is given:
        ``{"loss": ..., "accuracy": ...}``.

        ``accuracy`` is given for softmax networks (fraction of argmax hits)
        and sigmoid ones (fraction of rows with every label right); it is
        never weighted.
        """
        X, labels, targets = self._check_Xy(X, y)
        weights = self._check_weights(sample_weight, None, labels, X.shape[0])
        return self._evaluate(X, labels, targets, weights)

    def _evaluate(self, X, labels, targets, weights=None):
        if weights is None:
            weights = np.empty(0, dtype=self.dtype)
        loss, correct = _engine.evaluate(self._parameters, self._layout, X, labels, targets,
                                         weights)
        n = X.shape[0]
        result = {"loss": loss / _total_weight(weights, n)}
        if self.output != "identity":
            result["accuracy"] = correct / n
        return result

    # ----------------------------------------------------------- training ----

    def gradients(self, X, y, sample_weight=None, class_weight=None):
        """(mean loss, [dW per layer], [db per layer]) over the whole batch (X, y),
        without dropout; the loss is the weighted mean if weights are given.

        The gradient arrays are fresh copies, shaped like `weights`/`biases`.
        """
        X, labels, targets = self._check_Xy(X, y)
        weights = self._check_weights(sample_weight, class_weight, labels, X.shape[0])
        work = self._workspace(X.shape[0])
        loss, _ = _engine.loss_and_gradients(self._parameters, self._gradients, self._layout,
                                             X, labels, targets, weights, work)
        grads = self._gradients.copy()
        return loss / _total_weight(weights, X.shape[0]), list(self._views(grads)), list(self._views(grads, biases=True))

    def fit(self, X, y, epochs=10, batch_size=128, lr=None, optimizer=None, momentum=None,
            weight_decay=None, schedule="constant", shuffle=True, sample_weight=None,
            class_weight=None, validation_data=None, validation_split=0.0,
            early_stopping=False, patience=5, min_delta=0.0, verbose=1, progress=False,
            on_epoch_end=None, checkpoint=None, initial_epoch=0, history=None,
            checkpoint_metadata=None):
        """Train on (X, y); returns a History of per-epoch records.

        Each epoch runs entirely in C without the GIL. With ``shuffle`` the
        rows are visited in a fresh random order each epoch, drawn from the
        network's seed. Dropout, if the network has it (``dropout=`` in the
        constructor), applies to every training batch.

        optimizer : None, "sgd", "momentum", "nesterov", "adam" or an Optimizer
            None continues the network's current optimizer (and its state)
            if it has one and no lr/momentum/weight_decay is given, else
            plain SGD. A name makes a fresh optimizer (defaults: lr 0.1 for
            the SGD family, momentum 0.9; lr 0.001 for Adam).
        weight_decay : L2 coefficient on the weights (not the biases).
        schedule : "constant", "step", "cosine", "invscaling" or a Schedule:
            the learning rate of each epoch (recorded as ``lr``).
        sample_weight : (n,) weights >= 0 per row. Each batch then minimises
            the weighted mean sum(w_i loss_i) / sum(w_i) (scikit-learn's
            convention), and ``loss`` is the weighted mean over the epoch.
        class_weight : {class: weight} (missing classes weigh 1) or
            "balanced" (n / (k * count of the class)); softmax only.
            Multiplies sample_weight when both are given.
        validation_data : (X_val, y_val) or (X_val, y_val, w_val), adds
            ``val_loss`` (and ``val_accuracy``).
        validation_split : instead, hold out this fraction of (X, y), drawn
            at random from the network's seed, for validation (with its
            share of the weights).
        early_stopping : stop when ``val_loss`` has not improved by more than
            ``min_delta`` for ``patience`` epochs, and restore the weights of
            the best epoch (``history.best_epoch``).
        verbose : 1 prints a line per epoch.
        progress : show a progress bar within each epoch (needs tqdm:
            ``pip install "cmlp[progress]"``). Results do not depend on it.
        on_epoch_end : called as on_epoch_end(history) after each epoch.
        checkpoint : a path; after every epoch the model, optimizer state,
            epoch and shuffling state are written there atomically, so that
            `Network.load_checkpoint` can resume the run exactly.
        initial_epoch, history : where a resumed run starts and the History
            it extends (both come from `load_checkpoint`).
        Raises ValueError if the loss becomes non-finite (learning rate too high).
        """
        epochs = positive_int(epochs, "epochs", minimum=0)
        batch_size = positive_int(batch_size, "batch_size")
        initial_epoch = positive_int(initial_epoch, "initial_epoch", minimum=0)
        if lr is not None:
            lr = positive_float(lr, "lr")
        if optimizer is None and lr is None and momentum is None and weight_decay is None \
                and self.optimizer is not None:
            opt = self.optimizer
        else:
            opt = make_optimizer("sgd" if optimizer is None else optimizer, lr, momentum,
                                 weight_decay)
        schedule = make_schedule(schedule)
        X, labels, targets = self._check_Xy(X, y)
        weights = self._check_weights(sample_weight, class_weight, labels, X.shape[0])
        bar = _progress_bar() if progress else None
        val = None
        if isinstance(validation_split, bool) or not 0 <= validation_split < 1:
            raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}")
        if validation_data is not None and validation_split:
            raise ValueError("give validation_data or validation_split, not both")
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError("validation_data must be (X_val, y_val) or (X_val, y_val, w_val)")
            val = self._check_Xy(*validation_data[:2], names=("X_val", "y_val"))
            w_val = validation_data[2] if len(validation_data) == 3 else None
            val = val + (self._check_weights(w_val, None, val[1], val[0].shape[0], "w_val"),)
        elif validation_split:
            n_val = int(round(validation_split * X.shape[0]))
            if n_val < 1 or n_val >= X.shape[0]:
                raise ValueError(f"validation_split={validation_split} leaves no validation "
                                 f"or no training rows out of {X.shape[0]}")
            order = np.random.default_rng(split_seed(self._seed_entropy)).permutation(X.shape[0])
            held, kept = np.sort(order[:n_val]), np.sort(order[n_val:])
            val = (X[held], labels[held] if labels.size else labels,
                   targets[held] if targets.size else targets,
                   weights[held] if weights.size else weights)
            X = X[kept]
            labels = labels[kept] if labels.size else labels
            targets = targets[kept] if targets.size else targets
            weights = weights[kept] if weights.size else weights
            if weights.size and not (weights.sum() > 0 and val[3].sum() > 0):
                raise ValueError("validation_split leaves training or validation rows whose "
                                 "sample weights sum to 0")
        if early_stopping:
            if val is None:
                raise ValueError("early_stopping needs validation_data or validation_split")
            patience = positive_int(patience, "patience")
            if isinstance(min_delta, bool) or not np.isfinite(min_delta) or min_delta < 0:
                raise ValueError(f"min_delta must be a finite number >= 0, got {min_delta!r}")
        if on_epoch_end is not None and not callable(on_epoch_end):
            raise TypeError("on_epoch_end must be callable")
        if history is not None and not isinstance(history, History):
            raise TypeError("history must be a History (from load_checkpoint)")

        self.optimizer = opt
        state = opt.bind(self._parameters.size, self.dtype)
        empty = np.empty(0, dtype=self.dtype)
        state1 = state[0] if len(state) > 0 else empty
        state2 = state[1] if len(state) > 1 else empty
        momentum_, beta1, beta2, eps = opt.hyperparameters()

        n = X.shape[0]
        batch = min(batch_size, n)
        # Workspaces: allocated once for the whole run, reused by every batch.
        work = self._workspace(batch)
        batch_X = np.empty((batch, self.n_features), dtype=self.dtype)
        batch_labels = np.empty(batch if labels.size else 0, dtype=np.int32)
        batch_targets = np.empty((batch if targets.size else 0, self.n_outputs), dtype=self.dtype)
        batch_weights = np.empty(batch if weights.size else 0, dtype=self.dtype)
        order = np.arange(n, dtype=np.intp)
        # With a progress bar, an epoch runs as ~100 calls of whole batches
        # (the same batches, in the same order, so the same result).
        n_batches = -(-n // batch)
        span = n if bar is None else batch * max(1, n_batches // 100)
        dropout_key = self._dropout_key
        run = {"epochs": epochs, "batch_size": batch_size, "shuffle": bool(shuffle),
               "schedule": schedule.config(), "validation_split": validation_split,
               "early_stopping": bool(early_stopping), "patience": patience,
               "min_delta": min_delta, "metadata": checkpoint_metadata or {}}

        history = History() if history is None else history
        stopper = _EarlyStopping(patience, min_delta, self._parameters) if early_stopping else None
        if stopper is not None and history.records:      # resuming: replay the monitor
            stopper.replay(history, self._resume_best)
        last = initial_epoch if stopper is not None and stopper.stopped else epochs
        for epoch in range(initial_epoch + 1, last + 1):
            rate = schedule(epoch - 1, epochs, opt.lr)
            start = time.perf_counter()
            if shuffle:
                order[:] = self._shuffle_rng.permutation(n)
            loss = 0.0
            correct = seen = 0
            epoch_bar = bar(n, epoch, epochs) if bar is not None else None
            for begin in range(0, n, span):
                part = _engine.train_epoch(
                    self._parameters, self._gradients, self._layout, X, labels, targets,
                    weights, order[begin:begin + span], work, batch_X, batch_labels,
                    batch_targets, batch_weights, dropout_key, self._batches_done,
                    opt.kind, rate, momentum_, beta1, beta2, eps, opt.weight_decay, opt.step,
                    state1, state2)
                loss, correct, seen = loss + part[0], correct + part[1], seen + part[2]
                opt.step, self._batches_done = part[3], part[4]
                if epoch_bar is not None:
                    epoch_bar.update(part[2])
            if epoch_bar is not None:
                epoch_bar.close()
            # Every row is visited once an epoch: the weights' total is known.
            record = {"epoch": epoch, "loss": loss / _total_weight(weights, seen)}
            if self.output != "identity":
                record["accuracy"] = correct / seen
            record["lr"] = rate
            record["seconds"] = time.perf_counter() - start
            if val is not None:
                for key, value in self._evaluate(*val).items():
                    record["val_" + key] = value
            history.append(record)
            stop = stopper is not None and stopper.update(epoch, record["val_loss"], self._parameters)
            if checkpoint is not None:
                extra = {"checkpoint_best": stopper.best_params} if stopper is not None else {}
                self._write(checkpoint, {**self._checkpoint_fields(epoch, run, history), **extra})
            if verbose:
                print(format_record(record, epochs), flush=True)
            if on_epoch_end is not None:
                on_epoch_end(history)
            if stop:
                break
        if stopper is not None:
            self._parameters[:] = stopper.best_params
            history.best_epoch = stopper.best_epoch
        return history

    def partial_fit(self, X, y, sample_weight=None, class_weight=None, batch_size=128,
                    optimizer=None, lr=None, shuffle=True):
        """One pass over (X, y), continuing the network's training state.

        For data that arrives in pieces (streams, data too large for
        memory). The network's optimizer and its state (momentum, Adam
        moments, step count), the shuffling stream and the dropout stream
        all carry on from the previous fit/partial_fit, so calling
        partial_fit on the pieces of an epoch is plain mini-batch training.
        The first call creates the optimizer from `optimizer`/`lr` (default:
        SGD at lr 0.1); later, `lr` changes its rate in place (state kept)
        and `optimizer` replaces it. Returns the pass's record: ``loss``
        (and ``accuracy``) over the batches, measured before each update,
        and ``seconds``.
        """
        if optimizer is None and self.optimizer is not None:
            opt = self.optimizer
            if lr is not None:
                opt.lr = positive_float(lr, "lr")
        else:
            opt = make_optimizer("sgd" if optimizer is None else optimizer, lr)
        history = self.fit(X, y, epochs=1, batch_size=batch_size, optimizer=opt,
                           shuffle=shuffle, sample_weight=sample_weight,
                           class_weight=class_weight, verbose=0)
        record = dict(history.records[0])
        del record["epoch"]
        return record

    def _checkpoint_fields(self, epoch, run, history):
        return {
            "checkpoint_epoch": np.array(epoch, dtype=np.int64),
            "checkpoint_run": np.array(json.dumps(run)),
            "checkpoint_rng": np.array(json.dumps(self._shuffle_rng.bit_generator.state)),
            "checkpoint_history": np.array(json.dumps(history.records)),
        }

    @classmethod
    def load_checkpoint(cls, path):
        """Resume a run that fit(..., checkpoint=path) was writing.

        Returns (network, fit_kwargs): call ``network.fit(X, y, **fit_kwargs)``
        with the same data (and the same validation_data, sample_weight and
        class_weight, if the run had them) to continue where the run stopped; the result is bit-identical
        to the run that was never interrupted. fit_kwargs also
        holds the run's ``checkpoint_metadata`` (e.g. the CLI's arguments).
        """
        net, fields = cls._read(path)
        if "checkpoint_epoch" not in fields:
            raise ValueError(f"{os.fspath(path)!r} is a model, not a checkpoint (no epoch state)")
        try:
            run = json.loads(str(fields["checkpoint_run"]))
            net._shuffle_rng.bit_generator.state = json.loads(str(fields["checkpoint_rng"]))
            history = History()
            for record in json.loads(str(fields["checkpoint_history"])):
                history.append(record)
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"{os.fspath(path)!r}: damaged checkpoint state: {exc}") from None
        net._resume_best = fields.get("checkpoint_best")
        return net, {"epochs": run["epochs"], "batch_size": run["batch_size"],
                     "shuffle": run["shuffle"], "schedule": run["schedule"],
                     "validation_split": run["validation_split"],
                     "early_stopping": run["early_stopping"], "patience": run["patience"],
                     "min_delta": run["min_delta"],
                     "initial_epoch": int(fields["checkpoint_epoch"]), "history": history,
                     "checkpoint": os.fspath(path), "checkpoint_metadata": run["metadata"]}

    def fold_input_standardization(self, mean, std):
        """Make a network trained on (X - mean) / std take raw X, exactly.

        Rewrites the first layer in place: (X - mean) / std @ W + b equals
        X @ (W / std[:, None]) + (b - (mean / std) @ W). `mean` and `std` are
        scalars or arrays of shape (n_features,), with std > 0 and finite.
        """
        n = self.n_features
        mean = np.broadcast_to(np.asarray(mean, dtype=np.float64), (n,))
        std = np.broadcast_to(np.asarray(std, dtype=np.float64), (n,))
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise ValueError("mean must be finite and std finite and > 0")
        W = self.weights[0].astype(np.float64)
        b = self.biases[0].astype(np.float64)
        self.biases[0][...] = b - (mean / std) @ W
        self.weights[0][...] = W / std[:, None]

    # ------------------------------------------------------- persistence ----

    def save(self, path, history=None):
        """Write the model (and its optimizer's state) to `path` (.npz, no pickle),
        atomically. A History given is stored too (`load_history` reads it;
        `cmlp plot` draws it)."""
        if history is not None and not isinstance(history, History):
            raise TypeError("history must be a History (as returned by fit)")
        extra = {} if history is None else {"history": np.array(json.dumps(history.records))}
        self._write(path, extra)

    def _write(self, path, extra):
        path = os.fspath(path)
        fields = {
            "format": np.array(FORMAT),
            "sizes": np.asarray(self.sizes, dtype=np.int64),
            "activations": np.array(self.activations, dtype=np.str_).reshape(-1),
            "output": np.array(self.output),
            "dtype": np.array(self.dtype.name),
            "parameters": self._parameters,
            "seed_entropy": np.array(str(self._seed_entropy)),
            "dropout": self._dropout[:-1].copy(),
            "batches_done": np.array(self._batches_done, dtype=np.int64),
            **(self.optimizer.to_arrays() if self.optimizer is not None else {}),
            **extra,
        }
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".cmlp-", suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **fields)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path):
        """Read a model written by `save` (or a checkpoint). Raises
        FileNotFoundError for a missing file and ValueError for anything that
        is not a cmlp model."""
        return cls._read(path)[0]

    @classmethod
    def _read(cls, path):
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no model file at {path!r}")
        try:
            with np.load(path, allow_pickle=False) as data:
                fields = {key: data[key] for key in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise ValueError(f"{path!r} is not a readable cmlp model file: {exc}") from None
        missing = {"format", "sizes", "activations", "output", "dtype", "parameters"} - set(fields)
        if missing:
            raise ValueError(f"{path!r} is not a cmlp model file: missing {sorted(missing)}")
        if str(fields["format"]) != FORMAT:
            raise ValueError(f"{path!r} has format {str(fields['format'])!r}, expected {FORMAT!r}")
        try:
            net = cls(fields["sizes"].tolist(), list(fields["activations"].tolist()),
                      str(fields["output"]), str(fields["dtype"]))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path!r} describes an invalid network: {exc}") from None
        params = fields["parameters"]
        if params.shape != net._parameters.shape or params.dtype != net.dtype:
            raise ValueError(f"{path!r}: parameters are {params.dtype} {params.shape}, the network "
                             f"needs {net.dtype} {net._parameters.shape}")
        if not np.isfinite(params).all():
            raise ValueError(f"{path!r}: parameters contain NaN or infinite values")
        net._parameters[:] = params
        try:
            if "seed_entropy" in fields:
                net._seed_entropy = int(str(fields["seed_entropy"]))
            if "dropout" in fields:
                net.dropout = fields["dropout"].tolist()
            if "batches_done" in fields:
                net._batches_done = int(fields["batches_done"])
                if net._batches_done < 0:
                    raise ValueError("negative batch count")
            net.optimizer = Optimizer.from_arrays(fields)
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"{path!r}: damaged training state: {exc}") from None
        if net.optimizer is not None and any(
                s.shape != params.shape or s.dtype != net.dtype for s in net.optimizer.state):
            raise ValueError(f"{path!r}: optimizer state does not match the parameters")
        return net, fields


def _total_weight(weights, n):
    """The sum of the sample weights (float64), or n when there are none."""
    return float(weights.sum(dtype=np.float64)) if weights.size else n


def load_history(path):
    """The History stored in a checkpoint, or in a model saved with a history."""
    path = os.fspath(path)
    _, fields = Network._read(path)
    key = "checkpoint_history" if "checkpoint_history" in fields else "history"
    if key not in fields:
        raise ValueError(f"{path!r} holds no training history (save it with "
                         "net.save(path, history) or train with a checkpoint)")
    try:
        history = History()
        for record in json.loads(str(fields[key])):
            history.append(record)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path!r}: damaged history: {exc}") from None
    return history


def _progress_bar():
    """A factory of per-epoch tqdm bars (tqdm is an optional dependency)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ImportError('progress=True shows a progress bar and needs tqdm: '
                          'pip install "cmlp[progress]" (or pip install tqdm)') from None

    def bar(total, epoch, epochs):
        return tqdm(total=total, desc=f"epoch {epoch}/{epochs}", unit="sample",
                    unit_scale=True, leave=False, mininterval=0.2)
    return bar


class _EarlyStopping:
    """Tracks val_loss; keeps a copy of the best parameters."""

    def __init__(self, patience, min_delta, params):
        self.patience, self.min_delta = patience, min_delta
        self.best_loss, self.best_epoch, self.wait = np.inf, 0, 0
        self.best_params = params.copy()

    @property
    def stopped(self):
        return self.wait >= self.patience

    def update(self, epoch, loss, params=None):
        """Record an epoch (copying params if it is the best); True when
        training should stop."""
        if loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch, self.wait = loss, epoch, 0
            if params is not None:
                self.best_params[:] = params
        else:
            self.wait += 1
        return self.stopped

    def replay(self, history, best_params):
        """Rebuild the monitor's state from a resumed run's history."""
        for record in history.records:
            self.update(record["epoch"], record["val_loss"])
        if best_params is not None:
            self.best_params[:] = best_params


def format_record(record, epochs=None):
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
