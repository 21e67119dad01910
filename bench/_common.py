"""Shared helpers for the bench scripts: timing, data, machine facts, output."""
import datetime
import json
import os
import platform
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def optional(name):
    """Import a peer library, or None (the bench then skips it with a note)."""
    try:
        return __import__(name)
    except ImportError:
        return None


def load_data(path, smoke=False):
    """MNIST (train, test) from `path`/$CMLP_DATA/../shared/data/mnist, or, for
    --smoke, small random data of MNIST's shape."""
    if smoke:
        rng = np.random.default_rng(0)
        X = (rng.random((600, 784)) * (rng.random((600, 784)) < 0.2)).astype(np.float32)
        y = rng.integers(0, 10, 600)
        return X[:500], y[:500], X[500:], y[500:], "synthetic (smoke)"
    from cmlp.datasets import load_mnist
    default = os.path.join(ROOT, "..", "shared", "data", "mnist")
    if path is None and not os.environ.get("CMLP_DATA") and os.path.isdir(default):
        path = default
    X_train, y_train, X_test, y_test = load_mnist(path)
    return X_train, y_train, X_test, y_test, "MNIST"


def machine():
    info = {"platform": platform.platform(), "python": sys.version.split()[0],
            "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as fh:
            models = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        info["cpu"] = models[0] if models else platform.processor()
        with open("/proc/meminfo") as fh:
            info["memory_gib"] = round(int(fh.readline().split()[1]) / 2**20, 1)
    except OSError:
        info["cpu"] = platform.processor()
    return info


def versions():
    import scipy

    import cmlp
    found = {"cmlp": cmlp.__version__, "numpy": np.__version__, "scipy": scipy.__version__}
    for name, module in (("torch", "torch"), ("scikit-learn", "sklearn"),
                         ("onnxruntime", "onnxruntime")):
        lib = optional(module)
        if lib is not None:
            found[name] = lib.__version__
    tpc = optional("threadpoolctl")
    if tpc is not None:
        found["blas"] = [{"library": i.get("filepath", "").rsplit("/", 1)[-1],
                          "version": i.get("version"), "threads": i.get("num_threads")}
                         for i in tpc.threadpool_info()]
    return found


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(kind, payload, results_dir=None):
    results_dir = results_dir or os.path.join(HERE, "results")
    os.makedirs(results_dir, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(results_dir, f"{kind}-{stamp}.json")
    payload = {"bench": kind, "date": datetime.datetime.now().isoformat(timespec="seconds"),
               "machine": machine(), "versions": versions(), **payload}
    with open(path, "w") as fh:
        json.dump(payload, fh, indent=2)
    return path
