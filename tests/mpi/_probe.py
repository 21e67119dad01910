"""Imported by the MPI test scripts: records which path cmlp's gradient
reducer took on this rank, for `report` to print (rank 0: a line "probe
JSON", which the scripts' JSON-line readers pass over)."""
import json
import socket

import cmlp.distributed as distributed

paths = set()
_reduce = distributed.GradientReducer.reduce


def _recording_reduce(self, diverged):
    if self.window is None:
        paths.add("allreduce")
    elif self.cross is not None:
        paths.add("hierarchical")        # shared memory in a host, Allreduce across
    else:
        paths.add("shared-memory")
    return _reduce(self, diverged)


distributed.GradientReducer.reduce = _recording_reduce


def report(comm):
    """Every rank's host name and reducer paths, printed by rank 0."""
    everyone = comm.gather({"host": socket.gethostname(), "paths": sorted(paths)}, root=0)
    if comm.rank == 0:
        print("probe", json.dumps(everyone), flush=True)
