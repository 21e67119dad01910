"""Fork safety for cmlp's own GIL-free calls.

Design
------
* A thread forking while another is inside a BLAS call deadlocks: OpenBLAS's
  pre-fork handler joins its worker threads, busy with that call, or the
  child inherits OpenBLAS's level-3 lock held by a thread it does not have.
  cmlp's passes release the GIL, so `os.fork()` in one thread can meet a
  `predict` or `fit` in another (pre-forking servers, multiprocessing's
  fork start method).
* So every GIL-free section of cmlp that may call BLAS (a forward or
  evaluate chunk, a training batch up to its gradient hook, a whole
  loss_and_gradients) is entered through this gate: a counter of sections
  in flight and a "fork pending" flag, both C atomics. cmlp._fork registers
  `os.register_at_fork` handlers: before a fork, `close` raises the flag and
  waits (without the GIL) until no section is in flight; new sections wait
  at the gate; after it, `open` lowers the flag in the parent and `reset`
  clears both in the child (whose other threads are gone).
* A section is one chunk or batch, milliseconds: a fork waits at most that
  long. The wait is bounded (CLOSE_TIMEOUT_S), so a section that never ends
  cannot hang a fork forever.
* Sections never run Python code: a signal handler or a gradient hook that
  forked from inside one would wait for itself. A section entered while
  holding the GIL (small calls keep it) never waits at the gate: the
  forking thread must take the GIL back to fork, so it waits for that
  section instead.
"""

cdef extern from *:
    """
    #include <time.h>
    static int cmlp_fork_pending = 0;
    static int cmlp_in_flight = 0;

    static void cmlp_gate_pause(long ns) {
        struct timespec t = {0, ns};
        nanosleep(&t, NULL);
    }
    static void cmlp_gate_enter(void) {
        for (;;) {
            __atomic_add_fetch(&cmlp_in_flight, 1, __ATOMIC_SEQ_CST);
            /* A caller holding the GIL (a small call that keeps it) goes
               on: the forking thread needs the GIL back to fork, so waiting
               here would deadlock; it waits for this section instead. */
            if (!__atomic_load_n(&cmlp_fork_pending, __ATOMIC_SEQ_CST)
                    || PyGILState_Check())
                return;
            __atomic_sub_fetch(&cmlp_in_flight, 1, __ATOMIC_SEQ_CST);
            while (__atomic_load_n(&cmlp_fork_pending, __ATOMIC_SEQ_CST))
                cmlp_gate_pause(200000);
        }
    }
    static void cmlp_gate_leave(void) {
        __atomic_sub_fetch(&cmlp_in_flight, 1, __ATOMIC_SEQ_CST);
    }
    /* Raise the flag; wait up to max_polls * 50 us for the sections in
       flight to end. Returns how many are still in flight (0: all ended). */
    static int cmlp_gate_close(long max_polls) {
        long i;
        int left = 0;
        __atomic_store_n(&cmlp_fork_pending, 1, __ATOMIC_SEQ_CST);
        for (i = 0; i < max_polls; i++) {
            left = __atomic_load_n(&cmlp_in_flight, __ATOMIC_SEQ_CST);
            if (left == 0)
                return 0;
            cmlp_gate_pause(50000);
        }
        return __atomic_load_n(&cmlp_in_flight, __ATOMIC_SEQ_CST);
    }
    static void cmlp_gate_open(void) {
        __atomic_store_n(&cmlp_fork_pending, 0, __ATOMIC_SEQ_CST);
    }
    static void cmlp_gate_reset(void) {
        __atomic_store_n(&cmlp_in_flight, 0, __ATOMIC_SEQ_CST);
        __atomic_store_n(&cmlp_fork_pending, 0, __ATOMIC_SEQ_CST);
    }
    static int cmlp_gate_in_flight(void) {
        return __atomic_load_n(&cmlp_in_flight, __ATOMIC_SEQ_CST);
    }
    """
    void cmlp_gate_enter() nogil
    void cmlp_gate_leave() nogil
    int cmlp_gate_close(long max_polls) nogil
    void cmlp_gate_open() nogil
    void cmlp_gate_reset() nogil
    int cmlp_gate_in_flight() nogil

# How long a fork waits for the sections in flight (50 us polls).
CLOSE_TIMEOUT_S = 30.0


cdef void gate_enter() noexcept nogil:
    cmlp_gate_enter()


cdef void gate_leave() noexcept nogil:
    cmlp_gate_leave()


def close():
    """Before a fork: hold new sections, wait for those in flight (the GIL
    released meanwhile). Returns the number still in flight after
    CLOSE_TIMEOUT_S (0 normally)."""
    cdef long polls = <long> (CLOSE_TIMEOUT_S / 50e-6)
    cdef int left
    with nogil:
        left = cmlp_gate_close(polls)
    return left


def open():
    """After a fork, in the parent: let sections in again."""
    cmlp_gate_open()


def reset():
    """After a fork, in the child: no section is in flight (its threads are
    gone) and none is held."""
    cmlp_gate_reset()


def in_flight():
    """Sections in flight now (for tests)."""
    return cmlp_gate_in_flight()
