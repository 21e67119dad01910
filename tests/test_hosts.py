"""Data-parallel training between hosts: MPI ranks in network namespaces
joined by a bridge (tests/cluster.py), their gradients crossing the links
over TCP. Needs root (CI runs as root; elsewhere these tests are skipped
with the reason)."""
import json
import os
import signal
import subprocess
import sys
import time

import cluster as cluster_module
import numpy as np
import pytest

from cmlp import Network

from helpers import ENV, TESTS_DIR

OK, WHY = cluster_module.available()
if not OK and os.environ.get("CI"):
    raise RuntimeError(f"CI must run the cross-host tests: {WHY}")
pytestmark = pytest.mark.skipif(not OK, reason=WHY)

SCRIPTS = os.path.join(TESTS_DIR, "mpi")
# 2 hosts x 1 rank: one rank a host, MPI's Allreduce over the link.
# 2 hosts x 2 ranks: shared memory within a host, Allreduce across.
LAYOUTS = {"2x1": (2, 1, "allreduce"), "2x2": (4, 2, "hierarchical")}


@pytest.fixture(scope="module")
def cluster():
    with cluster_module.Cluster(hosts=2) as made:
        yield made


def run_script(cluster, layout, script, *args, timeout=600):
    """(JSON cases, the probe's per-rank records, bytes each host sent)."""
    ranks, ppn, _ = LAYOUTS[layout]
    before = cluster.link_bytes()
    result = cluster.mpiexec(ranks, [sys.executable, os.path.join(SCRIPTS, script),
                                     *map(str, args)], ppn=ppn, env=ENV, cwd=TESTS_DIR,
                             timeout=timeout)
    after = cluster.link_bytes()
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    cases = [json.loads(line) for line in lines if line.startswith("{")]
    probe = [json.loads(line.split(" ", 1)[1]) for line in lines if line.startswith("probe ")]
    assert len(probe) == 1, result.stdout[-2000:]
    return cases, probe[0], {h: after[h] - before[h] for h in after}


def assert_across_hosts(layout, probe, sent, least):
    ranks, ppn, path = LAYOUTS[layout]
    # Each rank ran where the launcher put it: ppn ranks on each host...
    hosts = [record["host"] for record in probe]
    assert sorted(hosts) == sorted(["h0", "h1"] * ppn), hosts
    # ...its gradients summed by the path for that layout (the test knows
    # it from the reducer itself: tests/mpi/_probe.py)...
    assert all(record["paths"] == [path] for record in probe), probe
    # ...and through the links: both hosts sent at least `least` bytes.
    assert min(sent.values()) >= least, sent


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_fit_across_hosts_equals_one_process(cluster, layout):
    # tests/mpi/fit_equivalence.py: 2 epochs of SGD and Adam, weighted and
    # not, float32 and float64, on 403 rows at global batch 37 (11 steps an
    # epoch), against one process at the same batch.
    cases, probe, sent = run_script(cluster, layout, "fit_equivalence.py", 403, 37)
    assert len(cases) == 8
    for case in cases:
        tolerance = 1e-5 if case["dtype"] == "float32" else 1e-12
        assert case["relative"] < tolerance and case["loss_relative"] < tolerance, case
        assert case["ranks_equal"] and case["histories_equal"], case
    # 8 runs x 22 steps x a gradient of 404 values (4 or 8 bytes) each way.
    assert_across_hosts(layout, probe, sent, least=8 * 22 * 404 * 4)
    worst = {dtype: max(c["relative"] for c in cases if c["dtype"] == dtype)
             for dtype in ("float32", "float64")}
    print(f"\n{layout}: worst relative error {worst}, bytes sent {sent}")


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_sharded_fit_across_hosts_equals_one_process(cluster, layout):
    ranks = LAYOUTS[layout][0]
    cases, probe, sent = run_script(cluster, layout, "sharded.py", 5, 4)
    assert [c["case"] for c in cases] == ["equal"] * 8 + ["uneven"]
    for case in cases[:8]:
        tolerance = 1e-5 if case["dtype"] == "float32" else 1e-12
        assert case["relative"] < tolerance and case["metrics_relative"] < tolerance, case
        assert case["ranks_equal"] and case["histories_equal"], case
    uneven = cases[8]
    assert uneven["ranks_equal"] and uneven["histories_equal"] and uneven["repeatable"], uneven
    assert_across_hosts(layout, probe, sent, least=10_000)
    assert ranks == len(probe)


def train(cluster, mnist_path, *args, timeout=600, background=False, **kwargs):
    """`cmlp train --mpi` on 2 hosts x 1 rank (784-32-10, raw pixels)."""
    command = [sys.executable, "-m", "cmlp", "train", "--mpi", "--hidden", "32",
               "--no-standardize", *map(str, args)]
    env = {**ENV, "CMLP_DATA": mnist_path}
    if background:
        return cluster.popen(2, command, env=env, cwd=TESTS_DIR, **kwargs)
    return cluster.mpiexec(2, command, env=env, cwd=TESTS_DIR, timeout=timeout)


def test_cli_resumes_across_hosts_exactly(cluster, mnist_path, tmp_path):
    # One epoch with a checkpoint, then --resume for the second, between two
    # hosts: bit for bit the model of both epochs in one go.
    whole, resumed, checkpoint = tmp_path / "whole.npz", tmp_path / "resumed.npz", tmp_path / "c.npz"
    for result in (train(cluster, mnist_path, "--epochs", 2, "--save", whole),
                   train(cluster, mnist_path, "--epochs", 1, "--checkpoint", checkpoint),
                   train(cluster, mnist_path, "--resume", checkpoint, "--epochs", 2,
                         "--save", resumed)):
        assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming" in result.stdout
    np.testing.assert_array_equal(Network.load(whole).parameters,
                                  Network.load(resumed).parameters)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def test_a_killed_host_ends_the_job_and_its_checkpoint_resumes(cluster, mnist_path,
                                                                tmp_path):
    # Host h1's processes SIGKILLed after the first checkpoint: the job ends
    # (mpiexec exits, no process is left on either host) within a bounded
    # time, and the checkpoint rank 0 wrote resumes to the uninterrupted run.
    epochs = 8
    checkpoint, log = tmp_path / "c.npz", tmp_path / "log"
    with open(log, "w") as out:
        job = train(cluster, mnist_path, "--epochs", epochs, "--checkpoint", checkpoint,
                    background=True, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: checkpoint.exists() or job.poll() is not None, 300,
                     "the first checkpoint")
            assert job.poll() is None, log.read_text()[-3000:]
            cluster.kill_host(1)
            killed = time.monotonic()
            job.wait(timeout=120)
            ended = time.monotonic() - killed
        finally:
            if job.poll() is None:
                job.kill()
                job.wait()
    output = log.read_text()
    assert job.returncode != 0, output[-3000:]
    assert f"epoch {epochs}/{epochs}" not in output          # it did not finish
    wait_for(lambda: not cluster.pids(0) and not cluster.pids(1), 30, "no process left")
    print(f"\nthe job ended {ended:.2f} s after host h1 was killed; its last words:\n"
          + "\n".join(output.splitlines()[-6:]))
    assert ended < 60
    resumed, whole = tmp_path / "resumed.npz", tmp_path / "whole.npz"
    for result in (train(cluster, mnist_path, "--resume", checkpoint, "--epochs", epochs,
                         "--save", resumed),
                   train(cluster, mnist_path, "--epochs", epochs, "--save", whole)):
        assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_array_equal(Network.load(whole).parameters,
                                  Network.load(resumed).parameters)


def test_the_cluster_leaves_nothing_behind():
    # A cluster torn down by an exception inside its block, and one whose
    # process was SIGTERMed mid-job: no namespace of theirs is left either
    # way. (Only their own: another process may run clusters meanwhile.)
    def of(pid):
        return {n for n in cluster_module._namespaces() if n.startswith(f"cmlp{pid}c")}
    with pytest.raises(RuntimeError, match="inside"):
        with cluster_module.Cluster(hosts=2) as made:
            mine = set(made.hosts) | {made.switch}
            assert mine <= of(os.getpid())
            raise RuntimeError("inside")
    assert not mine & of(os.getpid())
    child = subprocess.Popen(
        [sys.executable, os.path.join(TESTS_DIR, "cluster.py"), "--hosts", "2", "--",
         sys.executable, "-c", "import time; time.sleep(60)"],
        env=ENV, cwd=TESTS_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: len(of(child.pid)) == 3, 30, "the child's namespaces")
        time.sleep(1.0)                           # its job is running in them
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    wait_for(lambda: not of(child.pid), 30, "the teardown")


def test_a_lost_link_ends_the_job_on_both_sides(mnist_path, tmp_path):
    # Host h1's link goes down mid-run: nothing more arrives from it and MPI
    # waits on (MPICH: still waiting 90 s later). cmlp's step watchdog
    # (CMLP_MPI_TIMEOUT, here 5 s) ends the job on each side of the link:
    # mpiexec exits with the reason on stderr, and h1's ranks exit too.
    timeout = 5
    log = tmp_path / "log"
    with cluster_module.Cluster(hosts=2) as lossy, open(log, "w") as out:
        command = [sys.executable, "-m", "cmlp", "train", "--mpi", "--hidden", "32",
                   "--no-standardize", "--epochs", "500"]
        job = lossy.popen(2, command, env={**ENV, "CMLP_DATA": mnist_path,
                                           "CMLP_MPI_TIMEOUT": str(timeout)},
                          cwd=TESTS_DIR, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: "epoch   2/500" in log.read_text() or job.poll() is not None,
                     300, "two epochs")
            assert job.poll() is None, log.read_text()[-3000:]
            lossy.link_down(1)
            lost = time.monotonic()
            job.wait(timeout=120)
            ended = time.monotonic() - lost
            # h1's side: its rank's watchdog, then its launcher proxy.
            wait_for(lambda: not [pid for pid in lossy.pids(1)
                                  if b"python" in _cmdline(pid)], 60, "h1's ranks to exit")
            h1_ended = time.monotonic() - lost
        finally:
            if job.poll() is None:
                job.kill()
                job.wait()
    output = log.read_text()
    assert job.returncode != 0
    assert "no training step completed for" in output and "aborting the job" in output, \
        output[-3000:]
    print(f"\nlink down: mpiexec ended after {ended:.2f} s, h1's ranks after {h1_ended:.2f} s "
          f"(CMLP_MPI_TIMEOUT={timeout})")
    assert timeout <= ended < timeout + 30
    assert h1_ended < timeout + 30


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def test_bench_distributed_hosts_smoke(tmp_path):
    # bench/bench_distributed.py --hosts on tiny data: it builds its own
    # clusters (unshaped, 10 and 1 Gbit/s), and each step's gradient
    # crosses the link (rank 0's host sends at least the float32 gradient).
    bench = os.path.join(os.path.dirname(TESTS_DIR), "bench", "bench_distributed.py")
    result = subprocess.run([sys.executable, bench, "--smoke", "--hosts", "--results-dir",
                             str(tmp_path)], env=ENV, cwd=TESTS_DIR, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split("|") for line in result.stdout.splitlines()
            if line.startswith("| 784-")]
    assert len(rows) == 2 * 3 * 3                      # nets x batches x links
    gradient_mb = {"784-128-64-10": 109_387 * 4 / 1e6, "784-512-256-10": 535_819 * 4 / 1e6}
    for row in rows:
        sent = float(row[10].split()[0])
        assert sent >= 0.95 * gradient_mb[row[1].strip()], row
    assert list(tmp_path.glob("distributed_hosts-*.json"))
