"""Models and checkpoints on disk: one .npz format, never pickle.

A model file holds the architecture, the flat parameter buffer, the seed
entropy, dropout rates and batch counter, the optimizer (config, step,
state) and, optionally, a History. A checkpoint is a model file with the
run's state besides: the epochs done, the run's settings, the shuffling
generator, the history, early stopping's best weights and, when it was
written on Ctrl-C, the position within the epoch in progress. Files written
by every earlier cmlp (format cmlp-model-1) still load and resume.
"""
from __future__ import annotations

import errno
import io
import json
import os
import stat
import tempfile
import time
import zipfile

import numpy as np

from cmlp._engine import is_finite
from cmlp.history import History
from cmlp.optimizers import Optimizer

FORMAT = "cmlp-model-1"
REQUIRED = ("format", "sizes", "activations", "output", "dtype", "parameters")


def model_fields(net) -> dict:
    """The .npz fields of a network and its optimizer."""
    return {
        "format": np.array(FORMAT),
        "sizes": np.asarray(net.sizes, dtype=np.int64),
        "activations": np.array(net.activations, dtype=np.str_).reshape(-1),
        "output": np.array(net.output),
        "dtype": np.array(net.dtype.name),
        "parameters": net.parameters,
        "seed_entropy": np.array(str(net._seed_entropy)),
        "dropout": np.asarray(net.dropout, dtype=np.float64),
        "batches_done": np.array(net._batches_done, dtype=np.int64),
        "target_ndim": np.array(net._target_ndim, dtype=np.int64),
        "shuffle_rng": np.array(json.dumps(net._shuffle_rng.bit_generator.state)),
        **(net.optimizer.to_arrays() if net.optimizer is not None else {}),
    }


TMP_PREFIX, TMP_SUFFIX = ".cmlp-", ".npz.tmp"
# A temporary file of a save that died (SIGKILL, power loss) is removed by a
# later save in its directory once its process is gone, or after this long.
STALE_TMP_SECONDS = 24 * 3600


def _regular_target(path):
    """(the file a save to `path` writes, its current mode or None): symlinks
    are followed to their target; anything that exists and is not a regular
    file (a directory, a FIFO, a device) is refused."""
    target = os.path.realpath(path)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return target, None
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path!r} exists and is not a regular file; cmlp saves only to "
                         "regular files (or a new path)")
    return target, stat.S_IMODE(mode)


def _new_file_mode():
    """0o666 less the process umask (what open() would create)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    return 0o644


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temporaries(directory):
    now = time.time()
    for name in os.listdir(directory):
        if not (name.startswith(TMP_PREFIX) and name.endswith(TMP_SUFFIX)):
            continue
        path = os.path.join(directory, name)
        pid = name[len(TMP_PREFIX):].split("-", 1)[0]
        try:
            alive = pid.isdigit() and _process_alive(int(pid))
            if not alive or now - os.lstat(path).st_mtime > STALE_TMP_SECONDS:
                os.unlink(path)
        except OSError:
            pass          # another save removed it first, or it is not ours to remove


def _fsync_directory(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:       # some file systems cannot fsync a directory
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def write(net, path, extra: dict | None = None) -> None:
    """Write the network (plus `extra` fields) to `path` atomically.

    A symlink is written through to its target; anything at the path that
    is not a regular file is refused (ValueError). The data goes to a
    temporary file in the same directory, is fsynced, gets the mode the
    target had (a new file: 0o666 less the umask), and is renamed over the
    target; then the directory is fsynced. Temporaries left by saves that
    died are removed.
    """
    path = os.fspath(path)
    if not is_finite(net.parameters.reshape(1, -1)):
        raise ValueError("the parameters hold NaN or infinite values: not saving them "
                         "(load could not read them back)")
    fields = {**model_fields(net), **(extra or {})}
    target, mode = _regular_target(path)
    directory = os.path.dirname(target)
    _remove_stale_temporaries(directory)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f"{TMP_PREFIX}{os.getpid()}-",
                               suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **fields)
            fh.flush()
            os.fchmod(fh.fileno(), _new_file_mode() if mode is None else mode)
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def save(net, path, history: History | None = None) -> None:
    """Network.save: the model, with `history` if given."""
    if history is not None and not isinstance(history, History):
        raise TypeError("history must be a History (as returned by fit)")
    write(net, path, {} if history is None else {"history": np.array(history.to_json())})


def to_bytes(net) -> bytes:
    """The model file's bytes (what pickling a Network stores: no pickle of
    engine buffers, the same format as `save`)."""
    buffer = io.BytesIO()
    np.savez(buffer, **model_fields(net))
    return buffer.getvalue()


def from_bytes(cls, data: bytes):
    """A network from `to_bytes` output."""
    return _from_fields(cls, _load_fields(io.BytesIO(data), "<bytes>"), "<bytes>")[0]


def _load_fields(source, name):
    try:
        with np.load(source, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(f"{name!r} is not a readable cmlp model file: {exc}") from None


def read(cls, path):
    """(network of class `cls`, all fields) from a model or checkpoint file.
    FileNotFoundError for a missing file, ValueError for anything that is
    not a cmlp model."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no model file at {path!r}")
    if not stat.S_ISREG(os.stat(path).st_mode):     # a FIFO would block forever
        raise ValueError(f"{path!r} is not a regular file")
    return _from_fields(cls, _load_fields(path, path), path)


def _from_fields(cls, fields, path):
    missing = set(REQUIRED) - set(fields)
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
    if params.shape != net.parameters.shape or params.dtype != net.dtype:
        raise ValueError(f"{path!r}: parameters are {params.dtype} {params.shape}, the network "
                         f"needs {net.dtype} {net.parameters.shape}")
    if not np.isfinite(params).all():
        raise ValueError(f"{path!r}: parameters contain NaN or infinite values")
    net.parameters[:] = params
    try:
        if "seed_entropy" in fields:
            net._seed_entropy = int(str(fields["seed_entropy"]))
        if "dropout" in fields:
            net.dropout = fields["dropout"].tolist()
        if "batches_done" in fields:
            net._batches_done = int(fields["batches_done"])
            if net._batches_done < 0:
                raise ValueError("negative batch count")
        if "shuffle_rng" in fields:
            net._shuffle_rng.bit_generator.state = json.loads(str(fields["shuffle_rng"]))
        if "target_ndim" in fields:
            net._target_ndim = int(fields["target_ndim"])
            if net._target_ndim not in (1, 2):
                raise ValueError("target_ndim must be 1 or 2")
        net.optimizer = Optimizer.from_arrays(fields)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{path!r}: damaged training state: {exc}") from None
    if net.optimizer is not None and any(
            s.shape != params.shape or s.dtype != net.dtype for s in net.optimizer.state):
        raise ValueError(f"{path!r}: optimizer state does not match the parameters")
    return net, fields


# ----------------------------------------------------------- checkpoints ----

def write_checkpoint(run, path, metadata: dict | None = None) -> None:
    """Write a training run's state (cmlp.training.TrainingRun) to `path`,
    with `metadata` (the Checkpoint callback's) in its settings."""
    position = run.position if run.position["rows_done"] else None
    rng_state = position["rng"] if position else run.network._shuffle_rng.bit_generator.state
    fields = {
        "checkpoint_epoch": np.array(run.completed_epochs, dtype=np.int64),
        "checkpoint_run": np.array(json.dumps({**run.config, "metadata": metadata or {}})),
        "checkpoint_rng": np.array(json.dumps(rng_state)),
        "checkpoint_history": np.array(run.history.to_json()),
    }
    if position:
        fields["checkpoint_position"] = np.array(json.dumps(
            {key: value for key, value in position.items() if key != "rng"}))
    if run.early_stopping is not None:
        fields["checkpoint_best"] = run.early_stopping.best_params
    write(run.network, path, fields)


def load_checkpoint(cls, path):
    """(network, fit keyword arguments) to continue the run a checkpoint
    holds; see Network.load_checkpoint."""
    net, fields = read(cls, path)
    if "checkpoint_epoch" not in fields:
        raise ValueError(f"{os.fspath(path)!r} is a model, not a checkpoint (no epoch state)")
    try:
        run = json.loads(str(fields["checkpoint_run"]))
        net._shuffle_rng.bit_generator.state = json.loads(str(fields["checkpoint_rng"]))
        history = History.from_json(str(fields["checkpoint_history"]))
        position = None
        if "checkpoint_position" in fields:
            position = json.loads(str(fields["checkpoint_position"]))
            position = {"rows_done": int(position["rows_done"]),
                        "loss_sum": float(position["loss_sum"]),
                        "n_correct": int(position["n_correct"])}
        kwargs = {"epochs": run["epochs"], "batch_size": run["batch_size"],
                  "shuffle": run["shuffle"], "schedule": run["schedule"],
                  "validation_split": run["validation_split"],
                  "early_stopping": run["early_stopping"], "patience": run["patience"],
                  "min_delta": run["min_delta"],
                  "initial_epoch": int(fields["checkpoint_epoch"]), "history": history,
                  "checkpoint": os.fspath(path), "checkpoint_metadata": run["metadata"]}
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{os.fspath(path)!r}: damaged checkpoint state: {exc}") from None
    # Consumed by the next fit: early stopping's best weights and the
    # position within the epoch the run was interrupted in.
    net._resume = {"best": fields.get("checkpoint_best"), "position": position}
    return net, kwargs


def load_history(path) -> History:
    """The History stored in a checkpoint, or in a model saved with a history."""
    from cmlp.network import Network
    path = os.fspath(path)
    _, fields = read(Network, path)
    key = "checkpoint_history" if "checkpoint_history" in fields else "history"
    if key not in fields:
        raise ValueError(f"{path!r} holds no training history (save it with "
                         "net.save(path, history) or train with a checkpoint)")
    try:
        return History.from_json(str(fields[key]))
    except ValueError as exc:
        raise ValueError(f"{path!r}: {exc}") from None
