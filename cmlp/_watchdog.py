"""A rank that stops hearing from the others ends its job: the step watchdog
of data-parallel training (cmlp.distributed).

Design
------
* A host that loses its link (or its power) sends nothing more: no TCP
  reset reaches the others, and MPICH waits in the step's allreduce for as
  long as the connection looks open (measured between two namespace hosts:
  still waiting after 90 s, and on; no MPI call returns an error). A host
  whose processes die is different: its MPICH proxy's connection closes,
  and mpiexec ends the job at once.
* So every rank runs a watchdog thread while it trains: when no global step
  (or epoch end) has completed for `timeout` seconds, it writes why to
  stderr and calls comm.Abort(1) from its own thread (mpi4py initialises
  MPI with MPI_THREAD_MULTIPLE). If Abort itself has not ended the process
  after ABORT_WAIT seconds (its message to the launcher may need the lost
  link too), the process exits with os._exit(1). Either way the launcher
  sees the rank end; the ranks on the other side of the lost link do the
  same on their own.
* The timeout is CMLP_MPI_TIMEOUT seconds (default DEFAULT_TIMEOUT; 0 turns
  the watchdog off). A step, a validation pass, a checkpoint or a callback
  on rank 0 slower than that ends the job too, so it is large by default.
"""
import os
import sys
import threading
import time

DEFAULT_TIMEOUT = 300.0
ABORT_WAIT = 5.0


def configured_timeout():
    """CMLP_MPI_TIMEOUT in seconds (0: no watchdog); ValueError if malformed."""
    text = os.environ.get("CMLP_MPI_TIMEOUT", "")
    if not text.strip():
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"CMLP_MPI_TIMEOUT must be a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"CMLP_MPI_TIMEOUT must be >= 0 and finite, got {text!r}")
    return value


class StepWatchdog:
    """Aborts the job when progress() is not called for `timeout` seconds.
    A context manager: watching between enter and exit."""

    def __init__(self, comm, timeout):
        self.comm, self.timeout = comm, timeout
        self.last = time.monotonic()
        self.done = threading.Event()
        self.thread = None

    def progress(self):
        self.last = time.monotonic()

    def __enter__(self):
        if self.timeout > 0:
            self.progress()
            self.thread = threading.Thread(target=self._watch, name="cmlp-step-watchdog",
                                           daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        if self.thread is not None:
            self.thread.join()
        return False

    def _watch(self):
        poll = min(1.0, self.timeout / 4)
        while not self.done.wait(poll):
            silent = time.monotonic() - self.last
            if silent > self.timeout:
                self._abort(silent)
                return

    def _abort(self, silent):
        comm = self.comm
        sys.stderr.write(
            f"cmlp: rank {comm.rank} of {comm.size}: no training step completed for "
            f"{silent:.0f} s (CMLP_MPI_TIMEOUT={self.timeout:g}): another rank or its host "
            "is gone or unreachable; aborting the job\n")
        sys.stderr.flush()
        threading.Thread(target=comm.Abort, args=(1,), daemon=True).start()
        time.sleep(ABORT_WAIT)
        os._exit(1)
