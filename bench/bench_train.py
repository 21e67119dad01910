"""Training speed on MNIST: cmlp (1 and 2 threads) vs NumPy, PyTorch, scikit-learn
and the GEMM floor, on a quiet machine and beside a CPU-bound process.

    python bench/bench_train.py [--quick] [--repeats N] [--sizes 784-512-256-10]
                                [--batches 32,128,512] [--busy] [--data DIR]

Every system trains the network (default 784-128-64-10 ReLU) with softmax
cross-entropy and plain SGD (lr 0.1, no momentum, no weight decay), in
float32 (and cmlp in float64), from the same initial weights (cmlp's He
init, seed 0) on the same data, for batch sizes 1, 32, 128, 512. A cell is
the median wall time of one epoch over --repeats epochs (default 5), the
systems taking turns epoch by epoch so that all of them see the same
machine (each after 0.15 s idle, so that the thread pools of the system
before have gone quiet); its ratios are medians of the per-round ratios.
Batch 1 runs on a subset and is scaled to the full training set (marked *).

* cmlp float32 runs with its default thread count (`threads=None`: the cores
  this process may use, here named in the JSON); "cmlp float32, 1 thread"
  with threads=1. cmlp runs BLAS one thread per call either way.
* The GEMM floor is the time of the gemm calls alone (3 forward, 3
  weight-gradient, 2 input-gradient per mini-batch; bench/_bench_floor.pyx)
  through the same OpenBLAS, with its default threads (OpenBLAS splits each
  gemm) and with one.
* PyTorch uses its own default threads.
* Two-core ceiling: the 1-thread GEMM floor epoch alone, then two copies of
  it at once on two threads; 2 x alone / together is what a second core
  gives gemm-bound work on this machine in this run (1.0 to 2.0).
* --busy: after each quiet round, the same cmlp epochs (1 and 2 threads)
  and the floor run again beside a CPU-bound process (`while True: pass`),
  and are reported against the quiet 1-thread epoch of the same round.

Prints Markdown tables and writes JSON under bench/results/.
"""
import argparse
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

from cmlp import Network, _blas
from cmlp._threads import default_threads
from cmlp.reference import ReferenceNetwork

import _floor
from _common import load_data, markdown_table, optional, write_json

_bench_floor = _floor.load()

SIZES = [784, 128, 64, 10]
LR = 0.1
SEED = 0
BATCHES = [1, 32, 128, 512]
BUSY = [sys.executable, "-c", "while True: pass"]
SETTLE = 0.15           # seconds idle before each timed epoch (see _timed)


def initial_weights():
    net = Network(SIZES, "relu", "softmax", "float32", seed=SEED)
    return [W.copy() for W in net.weights], [b.copy() for b in net.biases]


def cmlp_system(dtype, threads=None):
    """An epoch's time is History.seconds: shuffle to last update. It leaves
    out fit()'s one-off check of X, which a multi-epoch fit pays once."""
    def make(X, y, batch):
        net = Network(SIZES, "relu", "softmax", dtype, seed=SEED)
        Xd = X.astype(dtype)

        def epoch():
            return net.fit(Xd, y, epochs=1, batch_size=batch, lr=LR, verbose=0,
                           threads=threads).seconds[0]
        epoch.reports_seconds = True
        return epoch
    return make


def numpy_system(X, y, batch):
    ref = ReferenceNetwork(SIZES, "relu", "softmax", "float32", seed=SEED)
    return lambda: ref.fit(X, y, epochs=1, batch_size=batch, lr=LR)


def torch_system(X, y, batch):
    import torch
    Ws, bs = initial_weights()
    layers = []
    for i, (W, b) in enumerate(zip(Ws, bs)):
        linear = torch.nn.Linear(*W.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W.T.copy()))
            linear.bias.copy_(torch.from_numpy(b))
        layers.append(linear)
        if i < len(Ws) - 1:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    X_t, y_t = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    generator = torch.Generator().manual_seed(SEED)

    def epoch():
        order = torch.randperm(len(X_t), generator=generator)
        for start in range(0, len(X_t), batch):
            idx = order[start:start + batch]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(X_t[idx]), y_t[idx]).backward()
            optimizer.step()
    return epoch


def sklearn_system(X, y, batch):
    from sklearn.neural_network import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=tuple(SIZES[1:-1]), activation="relu", solver="sgd",
                        learning_rate_init=LR, momentum=0.0, nesterovs_momentum=False,
                        alpha=0.0, batch_size=batch, shuffle=True, random_state=SEED)
    classes = np.arange(SIZES[-1])
    clf.partial_fit(X[:batch], y[:batch], classes=classes)     # allocates the layers
    Ws, bs = initial_weights()
    clf.coefs_ = [W.copy() for W in Ws]
    clf.intercepts_ = [b.copy() for b in bs]
    return lambda: clf.partial_fit(X, y)


def floor_system(blas_threads=None):
    """The GEMM floor with OpenBLAS's default threads, or pinned to some."""
    def make(X, y, batch):
        net = Network(SIZES, "relu", "softmax", "float32", seed=SEED)

        def epoch():
            before = _blas.blas_threads(blas_threads) if blas_threads else None
            try:
                _bench_floor.gemm_floor_epoch(net._parameters, net._layout, X, batch)
            finally:
                if before is not None:
                    _blas.blas_threads(before)
        return epoch
    return make


def two_core_ceiling(X, batch):
    """(alone, together): one 1-thread GEMM floor epoch, then two at once on
    two threads (the floor releases the GIL)."""
    net = Network(SIZES, "relu", "softmax", "float32", seed=SEED)
    before = _blas.blas_threads(1)
    try:
        def once():
            _bench_floor.gemm_floor_epoch(net._parameters, net._layout, X, batch)
        start = time.perf_counter()
        once()
        alone = time.perf_counter() - start
        # A short epoch (--smoke, --quick) is repeated to 50 ms, so that
        # starting the threads does not weigh in the ratio.
        repeats = max(1, int(0.05 / max(alone, 1e-6)))

        def run():
            for _ in range(repeats):
                once()
        if repeats > 1:
            start = time.perf_counter()
            run()
            alone = time.perf_counter() - start
        threads = [threading.Thread(target=run) for _ in range(2)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        together = time.perf_counter() - start
    finally:
        _blas.blas_threads(before)
    return alone, together


def competing_process():
    """A CPU-bound process beside the bench (killed by the caller)."""
    process = subprocess.Popen(BUSY)
    time.sleep(0.3)                    # let it start spinning
    return process


def main(argv=None):
    global SIZES, SETTLE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="10,000-sample epochs (scaled), batch 1 on 1,000 samples")
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per cell (>= 3)")
    parser.add_argument("--sizes", default="784-128-64-10", help="layer widths, e.g. 784-512-256-10")
    parser.add_argument("--batches", default="1,32,128,512", help="batch sizes, comma-separated")
    parser.add_argument("--busy", action="store_true",
                        help="also time cmlp and the floor beside a CPU-bound process")
    parser.add_argument("--data", help="MNIST directory (default $CMLP_DATA or ../shared)")
    parser.add_argument("--results-dir", help="where to write the JSON (default bench/results)")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    SIZES = [int(width) for width in args.sizes.split("-")]
    batches = [int(b) for b in args.batches.split(",")]

    X, y, _, _, source = load_data(args.data, smoke=args.smoke)
    full = len(X)
    n_main = min(full, 10000) if args.quick else full
    n_one = min(full, 1000 if args.quick else 3000)
    if args.smoke:
        n_main, n_one, args.repeats = full, 100, 1
        SETTLE = 0.0
    threads = default_threads()

    systems = [("cmlp float32", cmlp_system("float32"), None),
               ("cmlp float32, 1 thread", cmlp_system("float32", threads=1), None),
               ("cmlp float64", cmlp_system("float64"), None),
               ("NumPy reference", numpy_system, None),
               ("PyTorch CPU", torch_system, "torch"),
               ("scikit-learn", sklearn_system, "sklearn"),
               ("GEMM floor", floor_system(), None),
               ("GEMM floor, 1 thread", floor_system(1), None)]
    busy_names = ["cmlp float32", "cmlp float32, 1 thread", "GEMM floor"]
    notes = []
    available = []
    for name, make, needs in systems:
        if needs and optional(needs) is None:
            notes.append(f"{name}: skipped, {needs} is not installed (pip install '.[bench]')")
        else:
            available.append((name, make))
    results = {name: {} for name, _ in available}
    busy = {name: {} for name in busy_names}
    ceiling = {}
    for batch in batches:
        n = n_one if batch == 1 else n_main
        Xs, ys = X[:n], y[:n]
        runs = {}
        for name, make in available:
            small = min(n, 2 * batch + 64)
            make(Xs[:small], ys[:small], batch)()          # warm-up: first-call costs
            runs[name] = (make(Xs, ys, batch), [])
        busy_runs = {name: [] for name in busy_names} if args.busy and batch > 1 else {}
        ceiling[batch] = []
        # Rounds interleave the systems, so that the machine's drift hits all
        # of them alike and the ratios are measured side by side.
        for _ in range(args.repeats):
            for run, times in runs.values():
                times.append(_timed(run))
            if batch > 1:
                ceiling[batch].append(two_core_ceiling(Xs, batch))
            if busy_runs:
                process = competing_process()
                try:
                    for name, times in busy_runs.items():
                        times.append(_timed(runs[name][0]))
                finally:
                    process.kill()
                    process.wait()
        for name, (_, times) in runs.items():
            median = statistics.median(times)
            results[name][batch] = {"samples": n, "median_s": median, "runs_s": times,
                                    "per_epoch_s": median * full / n}
            print(f"  {name:24s} batch {batch:>3}: {median * full / n:8.3f} s/epoch",
                  file=sys.stderr, flush=True)
        for name, times in busy_runs.items():
            quiet_one = results["cmlp float32, 1 thread"][batch]["runs_s"]
            busy[name][batch] = {"median_s": statistics.median(times), "runs_s": times,
                                 "over_quiet_1_thread": statistics.median(
                                     b / q for b, q in zip(times, quiet_one))}

    def paired_ratio(name, other, batch):
        # Median over rounds of the within-round ratio: the rounds were taken
        # side by side, so this cancels the machine's drift between rounds.
        return statistics.median(a / b for a, b in zip(results[name][batch]["runs_s"],
                                                         results[other][batch]["runs_s"]))

    header = ["system"] + [f"batch {b}" + ("*" if b == 1 or n_main < full else "") for b in batches]
    rows = []
    for name, cells in results.items():
        row = [name]
        for batch in batches:
            cells[batch]["ratio_to_cmlp"] = paired_ratio(name, "cmlp float32", batch)
            cells[batch]["ratio_to_floor"] = paired_ratio(name, "GEMM floor", batch)
            row.append(f"{cells[batch]['per_epoch_s']:.3f} s · {cells[batch]['ratio_to_cmlp']:.2f}× "
                       f"cmlp · {cells[batch]['ratio_to_floor']:.2f}× floor")
        rows.append(row)
    print(f"Training, {source} {SIZES} ReLU, softmax-CE, SGD lr {LR}: median seconds per "
          f"{full}-sample epoch over {args.repeats} interleaved runs; ratios are medians of "
          f"per-run ratios. cmlp float32: {threads} threads (its default here)")
    print(markdown_table(header, rows))
    if 1 in batches or n_main < full:
        print("* scaled from " + ", ".join(
            ([f"{n_one} samples at batch 1"] if 1 in batches else [])
            + ([f"{n_main} samples at the other batch sizes"] if n_main < full else [])))

    # Threads: the speedup of the default over one thread, next to what a
    # second core gives gemm-bound work in the same run.
    scaling = {}
    for batch in [b for b in batches if b > 1]:
        pairs = ceiling[batch]
        scaling[batch] = {
            "speedup": paired_ratio("cmlp float32, 1 thread", "cmlp float32", batch),
            "over_floor": paired_ratio("cmlp float32", "GEMM floor", batch),
            "one_thread_over_floor_1": paired_ratio("cmlp float32, 1 thread",
                                                    "GEMM floor, 1 thread", batch),
            "two_core_ceiling": statistics.median(2 * a / t for a, t in pairs) if pairs else None,
            # Each round's (one floor epoch alone, two at once) in seconds.
            "two_core_rounds": [list(pair) for pair in pairs]}
    print(f"\nThreads, {SIZES}: cmlp at {threads} threads against 1 (medians of per-round "
          "ratios); the GEMM floor with OpenBLAS's threads; the two-core ceiling")
    print(markdown_table(
        ["batch", f"{threads} threads / 1 thread (speedup)", f"{threads} threads / floor",
         "1 thread / 1-thread floor", "two-core ceiling"],
        [[b, f"{c['speedup']:.2f}×", f"{c['over_floor']:.2f}×",
          f"{c['one_thread_over_floor_1']:.2f}×",
          f"{c['two_core_ceiling']:.2f}×" if c["two_core_ceiling"] else "-"]
         for b, c in scaling.items()]))
    if args.busy:
        print("\nBeside a CPU-bound process: each epoch over the quiet 1-thread cmlp epoch of "
              "the same round (medians)")
        print(markdown_table(["system"] + [f"batch {b}" for b in batches if b > 1],
                             [[name] + [f"{cells[b]['median_s'] * full / n_main:.3f} s · "
                                        f"{cells[b]['over_quiet_1_thread']:.2f}×"
                                        for b in batches if b > 1]
                              for name, cells in busy.items()]))
    if 1 in batches:
        step = {name: cells[1]["median_s"] / n_one * 1e6 for name, cells in results.items()}
        print("batch-1 SGD step: " + ", ".join(f"{k} {v:.1f} us" for k, v in step.items()))
    else:
        step = {}
    for note in notes:
        print(note)
    path = write_json("train", {
        "settings": {"sizes": SIZES, "lr": LR, "seed": SEED, "repeats": args.repeats,
                     "samples": n_main, "batch1_samples": n_one, "data": source,
                     "cmlp_threads": threads, "busy": args.busy,
                     "torch_threads": optional("torch").get_num_threads() if optional("torch") else None},
        "results": {name: {str(b): v for b, v in cells.items()} for name, cells in results.items()},
        "threads": {str(b): v for b, v in scaling.items()},
        "busy": {name: {str(b): v for b, v in cells.items()} for name, cells in busy.items()},
        "batch1_step_us": step, "notes": notes}, args.results_dir)
    print(f"wrote {path}")
    return 0


def _timed(run):
    # Idle first: the system timed before (NumPy's OpenBLAS, PyTorch's
    # threads) keeps a thread spinning for a while after its last call, and
    # that thread would take the second core from a 2-thread run.
    time.sleep(SETTLE)
    start = time.perf_counter()
    reported = run()
    elapsed = time.perf_counter() - start
    return reported if getattr(run, "reports_seconds", False) else elapsed


if __name__ == "__main__":
    sys.exit(main())
