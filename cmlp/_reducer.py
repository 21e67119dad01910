"""Summing the ranks' gradients every step (cmlp.distributed's hook): shared
memory between the ranks of a host, MPI between hosts."""
import numpy as np

from cmlp._layout import aligned_zeros


def share(n, rank, size):
    """(lo, hi): rank's rows of n, in order; the first n % size ranks get one more."""
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


class GradientReducer:
    """Sums the ranks' flat gradient buffers in place, every rank getting
    the same bits, plus one flag (did any rank's loss become non-finite).

    Ranks on one host write their gradients straight into an MPI
    shared-memory window (`buffer`); after a barrier, each rank sums its
    1/n of the elements over every rank's slot and writes the sum back into
    all slots, and a second barrier ends the step. Nothing is copied through
    MPI's own buffers: for the 2.1 MB gradient of 784-512-256-10 this took
    0.05 ms where Allreduce took 0.6-1.4 ms between two ranks here. With
    several hosts (the same number of ranks on each), the per-host partial
    sums of each 1/n go through one Allreduce between the ranks that hold
    the same 1/n on every host (a hierarchical allreduce, as Horovod's);
    otherwise a plain Allreduce of the buffer.
    """

    def __init__(self, comm, n, dtype, hosts=None):
        from mpi4py import MPI
        self.comm, self.n, self.MPI = comm, n, MPI
        # hosts: a communicator per group of ranks to treat as one host (for
        # tests of the several-host path on one machine); else the real ones.
        self.node = (comm.Split_type(MPI.COMM_TYPE_SHARED) if hosts is None
                     else hosts.Dup())
        self.cross = self.window = None
        per_host = comm.allgather(self.node.size)
        if len(set(per_host)) > 1 or self.node.size == 1:
            # Uneven hosts, or one rank per host: MPI's allreduce, the flag beside it.
            self.buffer = aligned_zeros(n + 1, dtype)
        else:
            # One row per rank, padded to whole cache lines; the flag after the gradient.
            width = -(-(n + 1) // 16) * 16
            item = np.dtype(dtype).itemsize
            size = self.node.size * width * item if self.node.rank == 0 else 0
            self.window = MPI.Win.Allocate_shared(size, item, comm=self.node)
            memory, _ = self.window.Shared_query(0)
            self.slots = np.ndarray((self.node.size, width), dtype=dtype, buffer=memory)
            self.buffer = self.slots[self.node.rank, :n + 1]
            self.lo, self.hi = share(n + 1, self.node.rank, self.node.size)
            self.part = np.empty(self.hi - self.lo, dtype=dtype)
            if self.node.size < comm.size:
                self.cross = comm.Split(self.node.rank, comm.rank)
        self.gradients = self.buffer[:n]

    def reduce(self, diverged):
        """Sum the gradients over the ranks; returns whether any rank said
        `diverged`."""
        self.buffer[self.n] = 1 if diverged else 0
        if self.window is None:
            self.comm.Allreduce(self.MPI.IN_PLACE, self.buffer, op=self.MPI.SUM)
        else:
            self.node.Barrier()                       # every slot written
            np.sum(self.slots[:, self.lo:self.hi], axis=0, out=self.part)
            if self.cross is not None:
                self.cross.Allreduce(self.MPI.IN_PLACE, self.part, op=self.MPI.SUM)
            self.slots[:, self.lo:self.hi] = self.part
            self.node.Barrier()                       # every sum written
        return self.buffer[self.n] != 0

    def free(self):
        for handle in (self.window, self.cross, self.node):
            if handle is not None:
                handle.Free()
        self.window = self.cross = self.node = None
