"""Network's files: save, load, checkpoints and resume, ONNX, pickling.

A mixin of cmlp.network.Network; the formats and their checks are
cmlp.persistence's.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from cmlp import _fork, persistence
from cmlp._validation import positive_int
from cmlp.history import History

if TYPE_CHECKING:
    from cmlp.network import Network


class NetworkFiles:
    """The file methods of Network (see cmlp.network)."""

    @classmethod
    def load_checkpoint(cls, path, *, max_bytes: int | None = None,
                        comm=None) -> tuple[Network, dict]:
        """Read a checkpoint that fit(..., checkpoint=path) was writing.

        Returns (network, fit_kwargs): ``network.fit(X, y, **fit_kwargs)``
        with the same data (and the same validation_data, sample_weight and
        class_weight, if the run had them) continues where the run stopped,
        mid-epoch if it was interrupted there; the result is bit-identical
        to the run that was never interrupted. fit_kwargs also holds the
        run's ``checkpoint_metadata`` (e.g. the CLI's arguments).
        `resume` does both steps in one call. `max_bytes` as for `load`.
        With an mpi4py `comm`, rank 0 alone reads the file and sends it to
        the other ranks (for a data-parallel run resumed with ``comm=``).
        """
        return persistence.load_checkpoint(cls, path, max_bytes, comm)

    @classmethod
    def resume(cls, path, X, y, *, epochs: int | None = None, comm=None, **fit_kwargs
               ) -> tuple[Network, History]:
        """Continue the run a checkpoint holds, on the same data: returns
        (network, history). `epochs` may extend the run; `fit_kwargs` are
        what the checkpoint cannot hold (validation_data, sample_weight,
        class_weight, callbacks, gradient_hook, verbose, progress,
        on_epoch_end, sharded). The checkpoint goes on being written at
        `path`. With `comm`, the run goes on data-parallel over its ranks
        (rank 0 reads the checkpoint and writes it)."""
        net, saved = cls.load_checkpoint(path, comm=comm)
        clash = sorted(set(fit_kwargs) & set(saved))
        if clash:
            raise ValueError(f"{clash} come from the checkpoint and cannot be changed "
                             "when resuming (epochs may be extended)")
        if epochs is not None:
            saved["epochs"] = positive_int(epochs, "epochs", minimum=saved["initial_epoch"])
        return net, net.fit(X, y, **saved, comm=comm, **fit_kwargs)

    def save(self, path, history: History | None = None) -> None:
        """Write the model (and its optimizer's state) to `path` (.npz, no pickle),
        atomically. A History given is stored too (`load_history` reads it;
        `cmlp plot` draws it)."""
        persistence.save(self, path, history)

    def to_onnx(self, path) -> None:
        """Write the network as an ONNX graph (opset 13, the network's dtype)
        that computes what `forward` does: class probabilities for softmax
        and sigmoid networks, raw outputs for identity ones. Input "X"
        (batch, n_features); output "probabilities" (or "outputs"). Runs in
        ONNX Runtime and any other ONNX engine, with no Python. Needs
        ``pip install "cmlp[onnx]"``. `cmlp export` does this from the
        command line."""
        from cmlp.onnx_export import export
        export(self, path)

    def __getstate__(self):
        # Pickle (copy, joblib) through the model format: no engine buffers.
        return {"model": persistence.to_bytes(self), "seed": self.seed}

    def __setstate__(self, state):
        net = persistence.from_bytes(type(self), state["model"])
        self.__dict__.update(net.__dict__)
        self.seed = state["seed"]
        _fork.track(self)

    @classmethod
    def load(cls, path, *, max_bytes: int | None = None) -> Network:
        """Read a model written by `save` (or a checkpoint).

        Raises FileNotFoundError for a missing file and ValueError for
        anything else that is not a valid cmlp model: not a regular file,
        damaged, inconsistent, or over a limit. Limits, checked before
        anything is allocated: at most 64 archive members (only the ones the
        format defines are read) and `max_bytes` of array data (default
        $CMLP_MAX_MODEL_BYTES, else 4 GiB). A file is never unpickled.
        """
        return persistence.read(cls, path, max_bytes)[0]
