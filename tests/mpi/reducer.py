"""Run under mpiexec by tests/test_distributed.py: GradientReducer against
MPI's Allreduce, on one host (shared memory), on ranks grouped as if on
2 hosts (shared memory within, an Allreduce across), and with groups of
different sizes (plain Allreduce). Rank 0 prints one JSON line per case."""
import json

import numpy as np
from mpi4py import MPI

from cmlp.distributed import GradientReducer

comm = MPI.COMM_WORLD
groupings = {"one host": None,
             "2 hosts": comm.Split(comm.rank // (comm.size // 2), comm.rank),
             "uneven hosts": comm.Split(int(comm.rank == 0), comm.rank)}
for name, hosts in groupings.items():
    for dtype in (np.float32, np.float64):
        for n in (7, 100_003):
            reducer = GradientReducer(comm, n, dtype, hosts=hosts)
            worst, same, flags = 0.0, True, []
            for step in range(comm.size + 1):       # the last: no rank diverged
                g = np.random.default_rng([comm.rank, step, n]).standard_normal(n).astype(dtype)
                reducer.gradients[:] = g
                expected = g.copy()
                comm.Allreduce(MPI.IN_PLACE, expected, op=MPI.SUM)
                flags.append(bool(reducer.reduce(diverged=comm.rank == step)))
                got = reducer.gradients.copy()
                worst = max(worst, float(np.max(np.abs(got - expected)) / np.max(np.abs(expected))))
                same &= len(set(comm.allgather(got.tobytes()))) == 1
            window = reducer.window is not None
            reducer.free()
            if comm.rank == 0:
                print(json.dumps({"case": name, "dtype": np.dtype(dtype).name, "n": n,
                                  "shared_memory": window, "relative": worst,
                                  "ranks_equal": same, "flags": flags}), flush=True)
