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

import io
import json
import os
import stat
import struct
import zipfile

import numpy as np

from cmlp._atomic import write_atomically
from cmlp._engine import is_finite
from cmlp._layout import check_architecture, offsets
from cmlp._validation import check_number
from cmlp.history import History
from cmlp.optimizers import Optimizer

FORMAT = "cmlp-model-1"
REQUIRED = ("format", "sizes", "activations", "output", "dtype", "parameters")
# Every member the format defines; reading ignores (and never reads) others.
KNOWN = REQUIRED + (
    "seed_entropy", "dropout", "batches_done", "target_ndim", "shuffle_rng", "history",
    "optimizer_config", "optimizer_step", "optimizer_state0", "optimizer_state1",
    "checkpoint_epoch", "checkpoint_run", "checkpoint_rng", "checkpoint_history",
    "checkpoint_position", "checkpoint_best", "checkpoint_data")

# Limits on reading a file, checked before anything is allocated. A file
# cmlp writes has at most len(KNOWN) members and a directory of a few KB.
MAX_MEMBERS = 64
MAX_DIRECTORY_BYTES = 1 << 20
# The data of the known members together; raise it with Network.load(...,
# max_bytes=) or the environment variable below.
DEFAULT_MAX_BYTES = 4 << 30
MAX_BYTES_ENV = "CMLP_MAX_MODEL_BYTES"


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


def write(net, path, extra: dict | None = None) -> None:
    """Write the network (plus `extra` fields) to `path` atomically
    (cmlp._atomic: temporary, fsync, rename; symlinks written through,
    non-regular targets refused, dead saves' temporaries removed)."""
    if not is_finite(net.parameters.reshape(1, -1)):
        raise ValueError("the parameters hold NaN or infinite values: not saving them "
                         "(load could not read them back)")
    fields = {**model_fields(net), **(extra or {})}
    write_atomically(path, lambda fh: np.savez(fh, **fields))


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


def max_bytes_limit(max_bytes=None) -> int:
    """The data limit of a read: `max_bytes`, else $CMLP_MAX_MODEL_BYTES,
    else DEFAULT_MAX_BYTES."""
    if max_bytes is None:
        env = os.environ.get(MAX_BYTES_ENV)
        if env is None:
            return DEFAULT_MAX_BYTES
        if not env.strip().isdigit():
            raise ValueError(f"{MAX_BYTES_ENV}={env!r} is not a number of bytes")
        return int(env)
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 0:
        raise TypeError(f"max_bytes must be an int >= 0, got {max_bytes!r}")
    return max_bytes


def _check_directory(fh):
    """Refuse, from the end-of-directory record alone, a zip with more
    members or a bigger directory than a cmlp file can have (parsing
    100,000 directory entries alone takes seconds)."""
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    tail_size = min(size, 22 + 0xFFFF)
    fh.seek(size - tail_size)
    tail = fh.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        raise ValueError("not an .npz (zip) archive")
    _, _, _, on_disk, total, directory_size, _, _ = struct.unpack("<4s4H2LH", tail[at:at + 22])
    if max(on_disk, total) > MAX_MEMBERS or directory_size > MAX_DIRECTORY_BYTES:
        raise ValueError(f"the archive has {total} members ({directory_size} bytes of "
                         f"directory); a cmlp file has at most {MAX_MEMBERS}")
    fh.seek(0)


def _read_member(archive, info):
    """One .npy member, its header checked against its stored size before
    the data is read: no object arrays, no shape the data does not hold."""
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise ValueError(f"unsupported .npy version {version}")
        if dtype.hasobject or dtype.kind not in "biufU":
            raise ValueError(f"dtype {dtype} is not one cmlp writes")
        count = 1
        for n in shape:
            count *= n
        data_bytes = count * dtype.itemsize
        if member.tell() + data_bytes != info.file_size:
            raise ValueError(f"its header declares {shape} {dtype} ({data_bytes} bytes), "
                             f"but {info.file_size - member.tell()} bytes are stored")
        buffer = bytearray(data_bytes)
        if member.readinto(buffer) != data_bytes:
            raise ValueError("truncated data")
        member.read(1)          # at the end: lets zipfile check the CRC
    array = np.frombuffer(buffer, dtype=dtype, count=count)
    return array.reshape(shape, order="F" if fortran else "C")


def _load_fields(fh, name, max_bytes=None):
    """The known members of an open .npz file (or BytesIO), each a NumPy
    array. ValueError for anything that is not a readable cmlp archive."""
    limit = max_bytes_limit(max_bytes)
    try:
        _check_directory(fh)
        with zipfile.ZipFile(fh) as archive:
            infos = archive.infolist()
            members = [info.filename for info in infos]
            if len(infos) > MAX_MEMBERS or len(set(members)) != len(members):
                raise ValueError(f"{len(infos)} members, or repeated ones; a cmlp file has "
                                 f"at most {MAX_MEMBERS}, each once")
            known = [info for info in infos
                     if info.filename.endswith(".npy") and info.filename[:-4] in KNOWN]
            total = sum(info.file_size for info in known)
            if total > limit:
                raise ValueError(
                    f"it holds {total} bytes of model data, more than the limit of {limit} "
                    f"bytes; if you trust the file, raise the limit with max_bytes= or the "
                    f"environment variable {MAX_BYTES_ENV}")
            fields = {}
            for info in known:
                try:
                    fields[info.filename[:-4]] = _read_member(archive, info)
                except MemoryError:
                    raise
                except Exception as exc:
                    raise ValueError(f"member {info.filename!r}: {exc}") from None
            return fields
    except MemoryError:
        raise
    except Exception as exc:      # any parse failure of a damaged file is a ValueError
        raise ValueError(f"{name!r} is not a readable cmlp model file: {exc}") from None


def read(cls, path, max_bytes=None):
    """(network of class `cls`, all fields) from a model or checkpoint file.
    FileNotFoundError for a missing file, ValueError for anything that is
    not a cmlp model (including one over the size limits above)."""
    path = os.fspath(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; the type is
        # then checked on the descriptor itself (no race with a rename).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise FileNotFoundError(f"no model file at {path!r}") from None
    except IsADirectoryError:
        raise ValueError(f"{path!r} is not a regular file") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path!r} is not a regular file")
        fields = _load_fields(fh, path, max_bytes)
    return _from_fields(cls, fields, path)


def _scalar(fields, key, kind=int, low=0):
    """A 0-d member as a Python int/float/str, checked (ints: >= low)."""
    value = fields[key]
    if value.shape != ():
        raise ValueError(f"{key} must be a scalar, got shape {value.shape}")
    value = value.item()
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f"{key} must be a string")
        return value
    if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < low):
        raise ValueError(f"{key} must be an integer >= {low}, got {value!r}")
    return value


def _from_fields(cls, fields, path):
    """The network the fields describe; ValueError, naming the file, for
    anything missing, inconsistent or out of range. The architecture is
    checked against the stored parameters before the network is built, so
    a small file cannot make this allocate more than it holds."""
    try:
        return _network_from_fields(cls, fields)
    except MemoryError:
        raise
    except Exception as exc:      # tampered content: always a ValueError
        raise ValueError(f"{path!r} is not a valid cmlp model: {exc}") from None


def _network_from_fields(cls, fields):
    missing = set(REQUIRED) - set(fields)
    if missing:
        raise ValueError(f"missing {sorted(missing)}")
    if _scalar(fields, "format", str) != FORMAT:
        shown = str(fields["format"])
        shown = shown if len(shown) <= 80 else shown[:80] + f"... ({len(shown)} characters)"
        raise ValueError(f"format {shown!r}, expected {FORMAT!r}")
    sizes, activations, output, dtype = check_architecture(
        fields["sizes"].tolist(), list(np.atleast_1d(fields["activations"]).tolist()),
        _scalar(fields, "output", str), _scalar(fields, "dtype", str))
    n_params = offsets(sizes)[2]
    params = fields["parameters"]
    if params.shape != (n_params,) or params.dtype != dtype:
        raise ValueError(f"parameters are {params.dtype} {params.shape}, the network "
                         f"{list(sizes)} needs {dtype} ({n_params},)")
    if not np.isfinite(params).all():
        raise ValueError("parameters contain NaN or infinite values")
    net = cls(list(sizes), activations, output, dtype.name)
    net._parameters[:] = params
    if "seed_entropy" in fields:
        net._seed_entropy = int(_scalar(fields, "seed_entropy", str))
        np.random.SeedSequence(net._seed_entropy)        # refuses a negative entropy
    if "dropout" in fields:
        net.dropout = fields["dropout"].tolist()
    if "batches_done" in fields:
        net._batches_done = _scalar(fields, "batches_done")
    if "shuffle_rng" in fields:
        net._shuffle_rng.bit_generator.state = json.loads(_scalar(fields, "shuffle_rng", str))
    if "target_ndim" in fields:
        net._target_ndim = _scalar(fields, "target_ndim", low=1)
        if net._target_ndim not in (1, 2):
            raise ValueError("target_ndim must be 1 or 2")
    net.optimizer = Optimizer.from_arrays(fields, params.shape, dtype)
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
        "checkpoint_data": np.array(json.dumps(run.data_identity())),
    }
    if position:
        fields["checkpoint_position"] = np.array(json.dumps(
            {key: value for key, value in position.items() if key != "rng"}))
    if run.early_stopping is not None:
        fields["checkpoint_best"] = run.early_stopping.best_params
    write(run.network, path, fields)


def load_checkpoint(cls, path, max_bytes=None, comm=None):
    """(network, fit keyword arguments) to continue the run a checkpoint
    holds; see Network.load_checkpoint. With an mpi4py `comm`, rank 0 reads
    the file (the other ranks need not see it) and broadcasts its fields;
    an unreadable file raises the same error on every rank."""
    if comm is None:
        net, fields = read(cls, path, max_bytes)
    else:
        outcome = None
        if comm.rank == 0:
            try:
                outcome = (read(cls, path, max_bytes)[1], None)
            except (OSError, ValueError, MemoryError) as exc:
                outcome = (None, exc)
        fields, error = comm.bcast(outcome, root=0)
        if error is not None:
            raise error
        net, fields = _from_fields(cls, fields, os.fspath(path))
    if "checkpoint_epoch" not in fields:
        raise ValueError(f"{os.fspath(path)!r} is a model, not a checkpoint (no epoch state)")
    try:
        kwargs, resume = _run_from_fields(net, fields)
    except MemoryError:
        raise
    except Exception as exc:      # tampered content: always a ValueError
        raise ValueError(f"{os.fspath(path)!r}: damaged checkpoint state: {exc}") from None
    kwargs["checkpoint"] = os.fspath(path)
    # Consumed by the next fit: early stopping's best weights and the
    # position within the epoch the run was interrupted in.
    net._resume = resume
    return net, kwargs


def _run_from_fields(net, fields):
    run = json.loads(_scalar(fields, "checkpoint_run", str))
    net._shuffle_rng.bit_generator.state = json.loads(_scalar(fields, "checkpoint_rng", str))
    history = History.from_json(_scalar(fields, "checkpoint_history", str))
    position = None
    if "checkpoint_position" in fields:
        stored = json.loads(_scalar(fields, "checkpoint_position", str))
        position = {"rows_done": stored["rows_done"], "loss_sum": stored["loss_sum"],
                    "n_correct": stored["n_correct"]}
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                   for v in (position["rows_done"], position["n_correct"])):
            raise ValueError("the position's row counts must be integers >= 0")
        position["loss_sum"] = check_number(position["loss_sum"], "the position's loss sum",
                                            low=0)
    best = fields.get("checkpoint_best")
    if best is not None and (best.shape != net.parameters.shape or best.dtype != net.dtype
                             or not np.isfinite(best).all()):
        raise ValueError("early stopping's best parameters do not match the network "
                         "or are not finite")
    data = None
    if "checkpoint_data" in fields:
        data = json.loads(_scalar(fields, "checkpoint_data", str))
        if not (isinstance(data, dict) and all(
                isinstance(data.get(key), int) and not isinstance(data.get(key), bool)
                and data[key] >= 0 for key in ("rows", "width", "fingerprint"))):
            raise ValueError("the training data's description must hold integer rows, "
                             "width and fingerprint >= 0")
    kwargs = {"epochs": run["epochs"], "batch_size": run["batch_size"],
              "shuffle": run["shuffle"], "schedule": run["schedule"],
              "validation_split": run["validation_split"],
              "early_stopping": run["early_stopping"], "patience": run["patience"],
              "min_delta": run["min_delta"],
              "initial_epoch": _scalar(fields, "checkpoint_epoch"), "history": history,
              "checkpoint_metadata": run["metadata"]}
    return kwargs, {"best": best, "position": position, "data": data}


def load_history(path, max_bytes, network_class) -> History:
    """The History stored in a checkpoint, or in a model saved with a history
    (cmlp.load_history; `network_class` reads the model around it)."""
    path = os.fspath(path)
    _, fields = read(network_class, path, max_bytes)
    key = "checkpoint_history" if "checkpoint_history" in fields else "history"
    if key not in fields:
        raise ValueError(f"{path!r} holds no training history (save it with "
                         "net.save(path, history) or train with a checkpoint)")
    try:
        return History.from_json(_scalar(fields, key, str))
    except MemoryError:
        raise
    except Exception as exc:
        raise ValueError(f"{path!r}: damaged history: {exc}") from None
