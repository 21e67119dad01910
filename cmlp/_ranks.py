"""What every rank of a data-parallel fit must agree on, checked once before
training (cmlp.distributed).

Design
------
* A rank that disagrees with the others (other rows, another network,
  another batch size) does not fail: it waits in a collective whose
  partners never come, or in one of another size, and the job hangs. So
  before the first collective whose shape depends on them, every rank
  describes what it will train (`summary`), one allgather compares the
  descriptions, and on a mismatch every rank raises the same
  RanksDisagree: the decision is collective, so no rank is left waiting and
  nothing needs an abort.
* The data is described by its shape, dtype and a fingerprint: a CRC of a
  few rows at fixed positions (and of their labels, targets and weights),
  O(FINGERPRINT_ROWS) whatever the size of X. In default mode every rank
  must pass the same data, so all of it is compared; in sharded mode each
  rank holds rows of its own, so only their width, dtype and kind.
"""
from __future__ import annotations

import zlib

import numpy as np

from cmlp._sparse import CsrMatrix

FINGERPRINT_ROWS = 64


class RanksDisagree(ValueError):
    """The ranks of a data-parallel fit were given different data, networks
    or settings; every rank raises it alike (no abort needed)."""


def _rows_bytes(X, rows):
    if isinstance(X, CsrMatrix):
        part = X.take(rows)
        return part.data.tobytes() + part.indices.tobytes() + part.indptr.tobytes()
    return np.ascontiguousarray(X[rows]).tobytes()


def fingerprint(data):
    """CRC32 of FINGERPRINT_ROWS evenly spaced rows of (X, labels, targets,
    weights); the empty ones count as empty."""
    X = data[0]
    n = X.shape[0]
    rows = np.unique(np.linspace(0, n - 1, min(n, FINGERPRINT_ROWS)).astype(np.intp))
    crc = zlib.crc32(_rows_bytes(X, rows))
    for array in data[1:]:
        if array.size:
            crc = zlib.crc32(np.ascontiguousarray(array[rows]).tobytes(), crc)
    return crc


def _data_summary(data, sharded):
    X, labels, targets, weights = data
    kinds = {"width": X.shape[1], "dtype": str(X.dtype), "sparse X": isinstance(X, CsrMatrix),
             "sample weights": bool(weights.size), "target columns": targets.shape[1]}
    if not sharded:
        kinds.update({"rows": X.shape[0], "data fingerprint": fingerprint(data)})
    return kinds


def summary(network, optimizer, data, validation, settings, sharded):
    """What this rank will train: {what: value}, comparable across ranks."""
    described = {
        "network": repr(network), "sizes": list(network.sizes),
        "optimizer": optimizer.config(), "sharded": bool(sharded), **settings,
        **_data_summary(data, sharded),
        "validation": None if validation is None else _data_summary(validation, sharded),
    }
    return {key: repr(value) for key, value in described.items()}


def check_agree(comm, described):
    """Raise RanksDisagree on every rank if any rank's summary differs from
    rank 0's, naming what differs and its value on each rank."""
    everyone = comm.allgather(described)
    differ = [key for key in everyone[0]
              if any(other.get(key) != everyone[0][key] for other in everyone[1:])]
    differ += sorted({key for other in everyone[1:] for key in other} - set(everyone[0]))
    if not differ:
        return
    lines = [f"  {key}: " + ", ".join(f"rank {r} {d.get(key, '-')}"
                                      for r, d in enumerate(everyone))
             for key in differ]
    hint = ("" if described.get("sharded") == "True" else
            "; in default mode every rank passes the same X, y (pass sharded=True when each "
            "rank holds rows of its own)")
    raise RanksDisagree(f"the {comm.size} ranks of this fit(comm=) disagree, so it would "
                        f"hang{hint}:\n" + "\n".join(lines))
