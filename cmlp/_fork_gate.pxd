# The fork gate: GIL-free sections that call BLAS, held off while a process
# forks (see _fork_gate.pyx). Pair every gate_enter with a gate_leave, and
# never run Python code (a hook, a signal handler) between them.
cdef void gate_enter() noexcept nogil
cdef void gate_leave() noexcept nogil
