"""os.fork() while other threads run cmlp: the handlers (see _fork_gate.pyx).

Before a fork, cmlp's GIL-free BLAS sections in flight finish and new ones
wait; after it, they go on in the parent, and the child starts with the
gate open and every network's training lock free (a thread that held one
in the parent does not exist in the child), and its shuffling generator's
lock too.
"""
import os
import threading
import warnings
import weakref

import numpy as np

from cmlp import _blas, _fork_gate

_networks = weakref.WeakSet()


def track(network):
    """Remember a network, to give it a fresh training lock in a forked child."""
    _networks.add(network)


def _before():
    left = _fork_gate.close()
    if left:
        warnings.warn(f"cmlp: forking while {left} BLAS section(s) still run after "
                      f"{_fork_gate.CLOSE_TIMEOUT_S:.0f} s; the child may deadlock in "
                      "OpenBLAS", RuntimeWarning, stacklevel=2)


def _fresh_generator(rng):
    """`rng` itself, or, if a parent thread held its lock at the fork (NumPy
    holds it, without the GIL, while it shuffles), a Generator continuing
    from its state with a lock of its own: the held one is never released
    in the child."""
    if not isinstance(rng, np.random.Generator):
        return rng
    lock = rng.bit_generator.lock           # an RLock: no locked() before Python 3.14
    if lock.acquire(blocking=False):
        lock.release()
        return rng
    fresh = type(rng.bit_generator)()
    fresh.state = rng.bit_generator.state
    return np.random.Generator(fresh)


def _after_in_child():
    _fork_gate.reset()
    _blas.reset_after_fork()
    for network in list(_networks):
        network._training = threading.Lock()
        network._shuffle_rng = _fresh_generator(network._shuffle_rng)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before, after_in_parent=_fork_gate.open,
                        after_in_child=_after_in_child)
