"""A hyperparameter sweep on a Dask cluster started the way a cluster is:
the `dask scheduler` and `dask worker` command-line tools, each its own
process (not LocalCluster), on 127.0.0.1; the scores equal one process's.
(A worker killed mid-search is not survived yet: joblib's dask backend
scatters arguments over 1 kB to a single worker, and with it gone the
search raised FutureCancelledError, even with X, y and the folds broadcast
through parallel_backend(scatter=...).)"""
import os
import signal
import subprocess
import sys
import time

import joblib
import numpy as np
import pytest
from distributed import Client, get_task_stream
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from cmlp.sklearn import MLPClassifier

from helpers import ENV, TESTS_DIR

DASK = os.path.join(os.path.dirname(sys.executable), "dask")
GRID = {"hidden_layer_sizes": [(16,), (32,), (48,)], "learning_rate_init": [0.01, 0.05]}


def search(folds):
    return GridSearchCV(MLPClassifier(max_iter=60, random_state=0), GRID, cv=folds)


def start(*args):
    # A session of its own: the whole `dask worker` (nanny and worker
    # process) can be killed as one, as a host going away would.
    return subprocess.Popen([DASK, *args], env=ENV, cwd=TESTS_DIR, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(process):
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=30)


@pytest.fixture
def cluster(tmp_path):
    """(scheduler file, [the two `dask worker` processes])."""
    scheduler_file = str(tmp_path / "scheduler.json")
    processes = [start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                       "--scheduler-file", scheduler_file)]
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(scheduler_file):
            assert processes[0].poll() is None, processes[0].stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the scheduler did not start in 60 s"
            time.sleep(0.1)
        for _ in range(2):
            processes.append(start("worker", "--scheduler-file", scheduler_file,
                                   "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"))
        yield scheduler_file, processes[1:]
    finally:
        for process in processes:
            stop(process)


def test_grid_search_on_dask_cli_workers_equals_one_process(cluster):
    scheduler_file, workers = cluster
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    folds = list(StratifiedKFold(3).split(X, y))       # GridSearchCV's cv=3 here
    with Client(scheduler_file=scheduler_file, timeout=60) as client:
        client.wait_for_workers(2, timeout=60)
        # Each worker's process, by the session of the `dask worker` it runs under.
        by_group = {os.getpgid(pid): address for address, pid in client.run(os.getpid).items()}
        assert sorted(by_group) == sorted(p.pid for p in workers)
        with get_task_stream(client) as stream, joblib.parallel_backend("dask"):
            on_cluster = search(folds).fit(X, y)
        ran_on = {task["worker"] for task in stream.data}
    # The 18 fits (6 settings x 3 folds) ran as tasks on both CLI workers...
    assert len(stream.data) >= 18 and ran_on == set(by_group.values()), ran_on
    # ...and scored exactly as the same search in this process.
    here = search(folds).fit(X, y)
    print(f"\nscores on the dask CLI cluster "
          f"{on_cluster.cv_results_['mean_test_score'].round(4).tolist()}")
    np.testing.assert_array_equal(on_cluster.cv_results_["mean_test_score"],
                                  here.cv_results_["mean_test_score"])
    assert on_cluster.best_params_ == here.best_params_
