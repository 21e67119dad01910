"""os.fork() while another thread runs cmlp (issue 19, item 3): pre-forking
servers and multiprocessing's fork start method do this. Without the fork
gate (cmlp._fork_gate) the parent deadlocked in OpenBLAS's pre-fork handler
or the children on its inherited level-3 lock; a child forked while the
parent trained found the training lock held."""
import subprocess
import sys
import textwrap

import pytest

from helpers import ENV, TESTS_DIR

FORKER = textwrap.dedent("""
    import os, sys, threading, time
    import numpy as np
    from cmlp import Network
    what, forks = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(0)
    X = rng.random((4096, 784), dtype=np.float32)
    y = rng.integers(0, 10, 4096)
    net = Network([784, 512, 10], seed=0)
    expected = net.predict(X[:64])
    stop = threading.Event()
    busy = []

    def work():
        while not stop.is_set():
            if what == "predict":
                net.predict(X)                   # ~0.1 s of GIL-free sgemm a call
                for row in range(20):            # small calls keep the GIL
                    net.predict(X[row:row + 1])
            else:
                net.partial_fit(X, y, batch_size=256, optimizer="adam")
            busy.append(1)

    thread = threading.Thread(target=work)
    thread.start()
    while not busy:
        time.sleep(0.01)
    done = 0
    for i in range(forks):
        time.sleep(0.02)
        pid = os.fork()
        if pid == 0:                             # the child: cmlp must work here
            ok = np.array_equal(net.predict(X[:64]), expected) if what == "predict" else True
            if what == "fit":                    # the parent's training lock is not ours
                net.partial_fit(X[:512], y[:512], batch_size=128)
            os._exit(0 if ok else 3)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            finished, status = os.waitpid(pid, os.WNOHANG)
            if finished:
                break
            time.sleep(0.01)
        else:
            print("child", i, "hung", flush=True)
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            break
        if os.waitstatus_to_exitcode(status) != 0:
            print("child", i, "failed", os.waitstatus_to_exitcode(status), flush=True)
            break
        done += 1
    stop.set()
    thread.join()
    print("forks ok", done, "busy calls", len(busy), flush=True)
""")


@pytest.mark.parametrize("what", ["predict", "fit"])
def test_fork_while_another_thread_runs_cmlp(what):
    forks = 20
    result = subprocess.run([sys.executable, "-c", FORKER, what, str(forks)], env=ENV,
                            cwd=TESTS_DIR, capture_output=True, text=True, timeout=120)
    print(result.stdout.strip())
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert f"forks ok {forks}" in result.stdout


def test_a_generator_whose_lock_another_thread_holds_is_replaced():
    """A child forked while a parent thread shuffled (NumPy holds the bit
    generator's lock without the GIL) would block on that lock forever: the
    child's handler gives it a Generator continuing from the same state."""
    import threading

    import numpy as np

    from cmlp._fork import _fresh_generator
    rng = np.random.default_rng(7)
    assert _fresh_generator(rng) is rng                   # free: kept
    held, release = threading.Event(), threading.Event()

    def hold():
        with rng.bit_generator.lock:
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(10)
    try:
        fresh = _fresh_generator(rng)
        assert fresh is not rng
        expected = np.random.default_rng(7).permutation(50)
        np.testing.assert_array_equal(fresh.permutation(50), expected)
    finally:
        release.set()
        thread.join()
