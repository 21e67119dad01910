"""The Python face of cmlp: Network validates, the C engine computes.

Training runs live in cmlp.training, files in cmlp.persistence, callbacks in
cmlp.callbacks; Network ties them to one set of parameters. Its inference,
parameter and file methods are mixins (cmlp._network_inference,
cmlp._network_parameters, cmlp._network_files).
"""
from __future__ import annotations

import threading
from typing import Callable, Sequence

import numpy as np

from cmlp import _engine, _entry, _fork, persistence
from cmlp._layout import (
    ACTIVATIONS,
    OUTPUTS,
    aligned_zeros,
    check_architecture,
    check_dropout,
    check_seed,
    dropout_key,
    init_params,
    offsets,
    shuffle_seed,
    split_flat,
)
from cmlp._network_files import NetworkFiles
from cmlp._network_inference import NetworkInference
from cmlp._network_parameters import NetworkParameters
from cmlp._scale import warn_if_far_from_unit_scale
from cmlp._validation import (
    as_matrix,
    check_weights,
    check_Xy,
    positive_float,
)
from cmlp.history import History
from cmlp.optimizers import Optimizer, make_optimizer
from cmlp.schedules import Schedule
from cmlp.training import DIVERGENCE_FACTOR, fit_network

FORMAT = persistence.FORMAT


class Network(NetworkInference, NetworkParameters, NetworkFiles):
    """A multilayer perceptron whose forward, backward and training loop run in C.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first: ``[784, 128, 64, 10]``.
    activation : str or sequence of str
        Hidden activation, one of ``relu``, ``leaky_relu`` (slope 0.01),
        ``gelu`` (exact, z Phi(z)), ``tanh``, ``sigmoid``, ``identity``, or
        one name per hidden layer.
    output : {"softmax", "identity", "sigmoid", "exp"}
        ``softmax``: softmax + cross-entropy over integer labels in [0, k).
        ``identity``: raw outputs + mean squared error, 1/(2m) sum (yhat - y)^2,
        over float targets of shape (n, k).
        ``sigmoid``: k independent sigmoids + binary cross-entropy, for
        multi-label targets of shape (n, k) in [0, 1] (usually 0/1).
        ``exp``: exp(z), the log link of Poisson regression, + half Poisson
        deviance, 1/m sum exp(z) - y z + y log y - y, over targets >= 0
        (counts, rates) of shape (n, k).
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
        Read-only views, W of shape (n_in, n_out) and b of shape (n_out,),
        into one flat parameter buffer (`parameters`, read-only too). They
        follow every change training makes. Change them with `set_weights`
        or `set_parameters`, which check the values: parameters are always
        finite and in the dtype's range, so every code path (one-row,
        batched, the NumPy reference) computes the same thing.

    Notes
    -----
    One Network may serve `forward`/`predict`/`evaluate`/`gradients` from
    several threads at once, also while it trains; a second `fit` or
    `partial_fit` while one runs raises RuntimeError. The architecture
    (`sizes`, `activations`, `output`, `dtype`) is read-only.
    """

    def __init__(self, sizes: Sequence[int], activation: str | Sequence[str] = "relu",
                 output: str = "softmax", dtype="float32", seed: int | None = None,
                 dropout: float | Sequence[float] = 0.0):
        # Read-only (properties below): the C layout is built from them once.
        self._sizes, activations, self._output, self._dtype = check_architecture(
            sizes, activation, output, dtype)
        self._activations = tuple(activations)
        # Per layer, the last (output) one always 0; the C layout reads this array.
        self._dropout = np.zeros(len(self.sizes) - 1, dtype=np.float64)
        self.dropout = dropout
        self.seed = seed = check_seed(seed)
        # The root of every random stream (equal to seed for an int seed; drawn
        # once for seed=None); saved with the model so a resumed run re-derives
        # the same streams, e.g. fit()'s validation_split.
        self._seed_entropy = np.random.SeedSequence(seed).entropy
        self._parameters = init_params(self.sizes, self.activations, seed, self.dtype)
        self._gradients = aligned_zeros(self._parameters.size, self.dtype)
        self._shuffle_rng = np.random.default_rng(shuffle_seed(seed))
        # Batches trained so far: the counter the dropout masks are drawn by.
        self._batches_done = 0
        self.optimizer = None        # set by fit(); its state carries over between fits
        # The shape of the targets fit() saw (1 for a 1-D y): predict answers in it.
        self._target_ndim = 2
        # Held while fit/partial_fit runs: a second one at once is refused.
        self._training = threading.Lock()
        _fork.track(self)
        w_off, b_off, n_params = offsets(self.sizes)
        self._layout = _engine.NetLayout(
            np.asarray(self.sizes, dtype=np.intp),
            np.asarray(w_off, dtype=np.intp),
            np.asarray(b_off, dtype=np.intp),
            np.asarray([ACTIVATIONS[a] for a in self.activations] + [ACTIVATIONS["identity"]],
                       dtype=np.int32),
            self._dropout, OUTPUTS[self.output], n_params)
        # Writable views for cmlp's own use; the public ones are read-only.
        self._weights, self._biases = split_flat(self._parameters, self.sizes)
        public = self._parameters.view()
        public.flags.writeable = False
        self._public = (public, *split_flat(public, self.sizes))
        # The dtype's specialisation of the fused C entry point, picked once:
        # dispatching on every call would cost more than a one-sample forward.
        self._forward = _entry.forward[self.dtype.name.replace("float32", "float")
                                       .replace("float64", "double")]

    @property
    def sizes(self) -> tuple:
        """Layer widths, input first (read-only: the C layout is built from them)."""
        return self._sizes

    @property
    def activations(self) -> list:
        """The activation of each hidden layer (a copy: read-only)."""
        return list(self._activations)

    @property
    def output(self) -> str:
        """The output layer and loss: softmax, identity or sigmoid (read-only)."""
        return self._output

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the parameters and all computation (read-only)."""
        return self._dtype

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
        return check_Xy(X, y, self.n_features, self.n_outputs, self.output, self.dtype, names)

    def _check_weights(self, sample_weight, class_weight, labels, n, name="sample_weight"):
        """Per-row weights (n,) combining sample_weight and class_weight, or
        an empty array when neither is given."""
        return check_weights(sample_weight, class_weight, labels, n, self.output,
                             self.n_outputs, self.dtype, name)

    def _workspace(self, rows):
        return np.empty((rows, self._layout.work_per_row), dtype=self.dtype)

    # ----------------------------------------------------------- training ----

    def fit(self, X, y, *, epochs: int = 10, batch_size: int = 128, lr: float | None = None,
            optimizer: str | Optimizer | None = None, momentum: float | None = None,
            weight_decay: float | None = None, schedule: str | Schedule | dict = "constant",
            shuffle: bool = True, sample_weight=None, class_weight=None,
            validation_data=None, validation_split: float = 0.0,
            early_stopping: bool = False, patience: int = 5, min_delta: float = 0.0,
            callbacks: Sequence = (), gradient_hook: Callable | None = None,
            verbose: int = 1, progress: bool = False, on_epoch_end: Callable | None = None,
            checkpoint=None, initial_epoch: int = 0, history: History | None = None,
            checkpoint_metadata: dict | None = None,
            divergence_factor: float | None = DIVERGENCE_FACTOR, comm=None,
            sharded: bool = False, threads: int | None = None) -> History:
        """Train on (X, y) with mini-batch gradient descent; returns a History
        of per-epoch records (``loss``, ``accuracy``, ``lr``, ``seconds``,
        ``val_*``).

        Each epoch runs in C without the GIL; Ctrl-C stops it within a
        fraction of a second, leaving the parameters of the last completed
        batch (with optimizer state and counters to match).

        Parameters
        ----------
        X : (n, n_features) array-like of numbers, or a scipy.sparse matrix
            (CSR; other formats are converted once), read by a sparse first
            layer without densifying it.
        y : (n,) integer labels in [0, k) for a softmax network; (n, k)
            float targets for identity (or (n,) with one output: `predict`
            then answers with shape (n,)) and sigmoid networks.
        epochs : passes over the data (0 trains nothing).
        batch_size : rows per step (the last batch of an epoch may be smaller).
        lr : the learning rate (default 0.1 for the SGD family, 0.001 for Adam).
        optimizer : None, "sgd", "momentum", "nesterov", "adam" or an
            Optimizer (cmlp.optimizers.SGD/Adam). None continues the
            network's current optimizer (and its state) if it has one and no
            lr/momentum/weight_decay is given, else plain SGD.
        momentum : for "momentum"/"nesterov" (default 0.9).
        weight_decay : L2 coefficient on the weights (not the biases).
        schedule : "constant", "step", "cosine", "invscaling" or a Schedule:
            each epoch's learning rate (recorded as ``lr``).
        shuffle : visit the rows in a fresh order each epoch, drawn from
            the network's seed.
        sample_weight : (n,) weights >= 0. Each batch minimises the weighted
            mean sum(w_i loss_i) / sum(w_i) (scikit-learn's convention).
        class_weight : {class: weight} or "balanced"; softmax only.
            Multiplies sample_weight when both are given.
        validation_data : (X_val, y_val) or (X_val, y_val, w_val): adds
            ``val_loss`` (and ``val_accuracy``) to each record.
        validation_split : instead, hold out this fraction of (X, y), drawn
            from the network's seed.
        early_stopping, patience, min_delta : shorthand for the callback
            ``EarlyStopping(patience, min_delta)``.
        callbacks : cmlp.callbacks.Callback objects (EarlyStopping,
            Checkpoint, ProgressBar, PrintEpochs, EpochEnd or your own).
        gradient_hook : called as ``gradient_hook(gradients, batch_weight)``
            between each batch's gradients (the flat buffer, the mean over
            the batch, changed in place by the hook) and its optimizer step;
            batch_weight is the batch's weight total (its row count when
            unweighted). For reductions over processes, so it is called for
            every batch, also one whose loss is non-finite (which is then
            not applied, and the fit raises TrainingDiverged).
        verbose : 1 prints a line per epoch (``PrintEpochs``).
        progress : a tqdm bar within each epoch (``ProgressBar``; needs
            ``pip install "cmlp[progress]"``). Results do not depend on it.
        on_epoch_end : ``on_epoch_end(history)`` after each epoch (``EpochEnd``).
        checkpoint, checkpoint_metadata : shorthand for
            ``Checkpoint(path, metadata)``: a resumable checkpoint after
            every epoch and on Ctrl-C (see `resume`).
        initial_epoch, history : where a resumed run starts and the History
            it extends (from `load_checkpoint`; `resume` does this for you).
        divergence_factor : an epoch whose training loss exceeds this times
            max(1, the loss the network had when the run began) counts as
            diverged (default 1e6); None leaves only NaN/inf as divergence.
        comm : an mpi4py communicator (e.g. ``MPI.COMM_WORLD``): train
            synchronously data-parallel over its ranks (cmlp.distributed;
            needs ``pip install "cmlp[mpi]"``). Every rank passes the same
            X, y and arguments; ``batch_size`` is the global batch, of which
            each rank trains its share; the gradients are summed over ranks
            every step, so every rank ends with the same parameters, the
            ones one process gets at that batch size (up to the order of
            sums). Only rank 0 prints and writes checkpoints. Divergence is
            detected on every rank at the same step (each raises
            TrainingDiverged); any other error on a rank aborts the whole
            job (``comm.Abort``) instead of leaving the others waiting.
        sharded : with comm, each rank passes only its own rows (and
            validation data) instead of the same X, y: each shuffles its
            rows locally, and every global step of ``batch_size`` rows takes
            from each rank in proportion to its row count.
        threads : worker threads that split each batch's rows (forward,
            backward, gradient sum and optimizer step; BLAS then runs one
            thread per call). None: the cores this process may use
            (``os.sched_getaffinity``), capped by OpenBLAS's thread count
            and ``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS``, which carry
            threadpoolctl's limits, joblib's worker caps and, with comm,
            each rank's share of its host. A batch too small to pay uses
            fewer. Results depend on the number of threads a batch uses
            (the order of sums), never on scheduling: the same ``threads``
            gives the same bits.

        Raises ValueError for bad arguments and when training diverges (a
        NaN/inf loss or parameters, or see divergence_factor): the network
        is then put back where the failing epoch started (parameters,
        optimizer state and counters), never left diverged.
        """
        options = {name: value for name, value in locals().items()
                   if name not in ("self", "X", "y", "comm", "sharded")}
        if comm is not None or sharded:
            from cmlp import distributed
            return distributed.fit(self, X, y, comm, sharded, options)
        warn_if_far_from_unit_scale(X)
        return fit_network(self, X, y, options)

    def partial_fit(self, X, y, *, sample_weight=None, class_weight=None,
                    batch_size: int = 128, optimizer: str | Optimizer | None = None,
                    lr: float | None = None, shuffle: bool = True, comm=None,
                    sharded: bool = False, threads: int | None = None) -> dict:
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
        and ``seconds``. `comm` and `sharded` as for `fit`: one data-parallel
        pass over the ranks; `threads` as for `fit`.
        """
        if optimizer is None and self.optimizer is not None:
            opt = self.optimizer
            if lr is not None:
                opt.lr = positive_float(lr, "lr")
        else:
            opt = make_optimizer("sgd" if optimizer is None else optimizer, lr)
        history = self.fit(X, y, epochs=1, batch_size=batch_size, optimizer=opt,
                           shuffle=shuffle, sample_weight=sample_weight,
                           class_weight=class_weight, verbose=0, comm=comm, sharded=sharded,
                           threads=threads)
        record = dict(history.records[0])
        del record["epoch"]
        return record



def load_history(path, max_bytes: int | None = None) -> History:
    """The History stored in a checkpoint, or in a model saved with a history."""
    return persistence.load_history(path, max_bytes, Network)
