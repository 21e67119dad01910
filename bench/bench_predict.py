"""Prediction speed: cmlp vs ONNX Runtime, NumPy, PyTorch and the GEMM floor.

    python bench/bench_predict.py [--quick] [--data DIR]

The network is 784-128-64-10 ReLU with a softmax output, float32, trained for
one epoch on 5,000 MNIST rows. Every system computes its class
probabilities from the same weights:

* cmlp: `Network.predict_proba`;
* ONNX Runtime: the graph cmlp exports (`Network.to_onnx`), CPU provider;
* NumPy: the pure-NumPy twin (cmlp.reference.ReferenceNetwork.forward);
* PyTorch: an nn.Sequential under `inference_mode`, then softmax;
* GEMM floor: the forward pass's three matrix products alone, one sgemm per
  layer over all rows, through the BLAS cmlp calls (scipy's OpenBLAS); and
  "layer-1 sgemm", the first of them alone (92 % of the multiply-adds).

Inputs: dense rows (standard normal, no zeros: standardized tabular data)
at 1, 8, 32, 256, 2048 and 10,000 rows per call, and MNIST test rows (mostly
zero pixels) at 1, 32 and 10,000. Each table is measured twice: at 1 thread
(cmlp threads=1; BLAS limited by threadpoolctl; torch.set_num_threads(1);
ONNX Runtime intra_op_num_threads=1), and at 2 threads (cmlp threads=2,
which splits the rows over its own threads, BLAS one thread per call).

--busy adds a table of batched dense calls (256, 2048, 10,000 rows) timed
beside a CPU-bound process (`while True: pass`): cmlp and ONNX Runtime at 1
and 2 threads, each against the same system's quiet time in that round.

Timing: --rounds rounds (default 7); in each, every system is timed in
turn on the same input (a loop of calls long enough to take ~budget/rounds
seconds, its mean per call), so drift of the shared machine hits them alike;
each measurement starts after 0.15 s of idling, so that the thread pool of
the system measured before it (OpenBLAS, PyTorch, ONNX Runtime spin for a
while after a call) has gone quiet and does not take a core from it.
A cell gives the median over rounds of the per-call time and the median
over rounds of the ratio cmlp / system measured in the same round (< 1: cmlp
is faster).

Batch-1 SGD step on dense rows: the time per row of one epoch of plain SGD
with batch size 1 over 2,000 dense rows (cmlp `fit`; PyTorch's usual
zero_grad/forward/backward/step loop; the NumPy reference), interleaved the
same way.

Throughput: samples per second from 1 and from 2 Python threads calling
`predict_proba` on ONE shared network, BLAS at 1 thread, so that the
threads, not BLAS, supply the parallelism.

Prints Markdown tables and writes JSON under bench/results/.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from cmlp import Network
from cmlp.reference import ReferenceNetwork

import _floor
from _common import load_data, markdown_table, optional, write_json

_bench_floor = _floor.load()

SIZES = [784, 128, 64, 10]
DENSE_ROWS = [1, 8, 32, 256, 2048, 10000]
MNIST_ROWS = [1, 32, 10000]
THREADS = [1, 2]
SGD_ROWS = 2000
SGD_LR = 1e-3


def mean_per_call(fn, seconds):
    """Mean seconds per call of fn over a loop lasting about `seconds`."""
    fn()
    loops, elapsed = 1, 0.0
    while True:
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds or loops >= 1 << 20:
            return elapsed / loops
        loops = max(loops * 2, int(loops * seconds / max(elapsed, 1e-9)))


def interleaved(systems, rounds, seconds, settle):
    """{name: [per-call seconds of each round]}, the systems timed in turn,
    each after `settle` seconds of idling: a thread pool keeps spinning for a
    while after its last call (OpenBLAS up to 2**28 cycles), and on 2 cores
    the previous system's spinners would take a core from the next one."""
    times = {name: [] for name in systems}
    for _ in range(rounds):
        for name, fn in systems.items():
            time.sleep(settle)
            times[name].append(mean_per_call(fn, seconds))
    return times


def paired(times, name, base="cmlp float32"):
    """Median over rounds of base / name, each ratio taken within one round."""
    return statistics.median(a / b for a, b in zip(times[base], times[name]))


def torch_model(net):
    torch = optional("torch")
    layers = []
    for i, (W, b) in enumerate(zip(net.weights, net.biases)):
        linear = torch.nn.Linear(*W.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W.T.copy()))
            linear.bias.copy_(torch.from_numpy(b.copy()))
        layers.append(linear)
        if i < len(net.weights) - 1:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def torch_forward(net):
    torch = optional("torch")
    model = torch_model(net).eval()

    def forward(X):
        with torch.inference_mode():
            return torch.softmax(model(torch.from_numpy(X)), dim=1).numpy()
    return forward


def ort_sessions(net, directory):
    """{threads: predict function} over cmlp's own exported graph."""
    ort = optional("onnxruntime")
    path = os.path.join(directory, "model.onnx")
    net.to_onnx(path)
    sessions = {}
    for threads in THREADS:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        sessions[threads] = lambda X, s=session, n=name: s.run(None, {n: X})[0]
    return sessions


def latency_tables(net, ref, inputs, rounds, seconds, settle, notes):
    """{threads: {label: {rows: {system: {"median_s", "ratio"}}}}} and prints tables."""
    tpc = optional("threadpoolctl")
    torch = optional("torch")
    torch_fn = torch_forward(net) if torch is not None else None
    tmp = tempfile.mkdtemp()
    sessions = ort_sessions(net, tmp) if optional("onnxruntime") and optional("onnx") else None
    if sessions is None:
        notes.append("ONNX Runtime: skipped, onnx/onnxruntime are not installed "
                     "(pip install '.[bench]')")
    if torch is None:
        notes.append("PyTorch: skipped, torch is not installed (pip install '.[bench]')")
    results = {}
    for threads in THREADS:
        if torch is not None:
            torch.set_num_threads(threads)
        with tpc.threadpool_limits(threads):
            results[threads] = {}
            for label, by_rows in inputs.items():
                results[threads][label] = {}
                for rows, X in by_rows.items():
                    systems = {"cmlp float32": lambda X=X, t=threads: net.predict_proba(
                        X, threads=t)}
                    if sessions is not None:
                        systems["ONNX Runtime"] = lambda X=X, f=sessions[threads]: f(X)
                    systems["NumPy reference"] = lambda X=X: ref.forward(X)
                    if torch_fn is not None:
                        systems["PyTorch CPU"] = lambda X=X: torch_fn(X)
                    systems["GEMM floor (3 sgemm)"] = lambda X=X: _bench_floor.gemm_floor_forward(
                        net._parameters, net._layout, X, 3)
                    systems["layer-1 sgemm alone"] = lambda X=X: _bench_floor.gemm_floor_forward(
                        net._parameters, net._layout, X, 1)
                    times = interleaved(systems, rounds, seconds, settle)
                    results[threads][label][rows] = {
                        name: {"median_s": statistics.median(t), "rounds_s": t,
                               "cmlp_over_system": paired(times, name)}
                        for name, t in times.items()}
                    print(f"  {threads} thread(s) {label} {rows} rows done", file=sys.stderr,
                          flush=True)
        for label, by_rows in results[threads].items():
            names = list(next(iter(by_rows.values())))
            rows_list = list(by_rows)
            table = []
            for name in names:
                row = [name]
                for rows in rows_list:
                    cell = by_rows[rows][name]
                    text = _us(cell["median_s"])
                    if name != "cmlp float32":
                        text += f" · cmlp {cell['cmlp_over_system']:.2f}×"
                    row.append(text)
                table.append(row)
            print(f"\n{label}, BLAS {threads} thread(s): median per call; cmlp× = median "
                  "per-round ratio cmlp / system")
            print(markdown_table(["system"] + [f"{r} row" + ("s" if r > 1 else "")
                                               for r in rows_list], table))
    return results


def busy_table(net, dense, rounds, seconds, notes):
    """{rows: {system: {"quiet_s", "busy_s", "busy_over_quiet", "cmlp_over_system"}}}:
    each round times every system quiet, then beside a CPU-bound process."""
    tmp = tempfile.mkdtemp()
    sessions = ort_sessions(net, tmp) if optional("onnxruntime") and optional("onnx") else {}
    result = {}
    for rows in (256, 2048, 10000):
        X = np.ascontiguousarray(dense[:rows])
        systems = {f"cmlp, {t} thread(s)": (lambda X=X, t=t: net.predict_proba(X, threads=t))
                   for t in THREADS}
        systems.update({f"ONNX Runtime, {t} thread(s)": (lambda X=X, f=f: f(X))
                        for t, f in sessions.items()})
        quiet = {name: [] for name in systems}
        loaded = {name: [] for name in systems}
        for _ in range(rounds):
            for name, fn in systems.items():
                time.sleep(0.15)
                quiet[name].append(mean_per_call(fn, seconds))
            process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                time.sleep(0.3)
                for name, fn in systems.items():
                    loaded[name].append(mean_per_call(fn, seconds))
            finally:
                process.kill()
                process.wait()
        base = "cmlp, 2 thread(s)"
        result[rows] = {name: {
            "quiet_s": statistics.median(quiet[name]), "busy_s": statistics.median(loaded[name]),
            "busy_over_quiet": statistics.median(b / q for b, q in zip(loaded[name],
                                                                        quiet[name])),
            "cmlp_over_system": statistics.median(a / b for a, b in zip(loaded[base],
                                                                         loaded[name]))}
            for name in systems}
        print(f"  busy {rows} rows done", file=sys.stderr, flush=True)
    print("\nBatched dense predict_proba beside a CPU-bound process: median per call, "
          "over the same system's quiet time, and cmlp (2 threads) / system")
    names = list(next(iter(result.values())))
    print(markdown_table(["system"] + [f"{r} rows" for r in result],
                         [[name] + [f"{_us(result[r][name]['busy_s'])} · "
                                    f"{result[r][name]['busy_over_quiet']:.2f}× quiet · "
                                    f"cmlp {result[r][name]['cmlp_over_system']:.2f}×"
                                    for r in result] for name in names]))
    if not sessions:
        notes.append("ONNX Runtime: not in the busy table (pip install '.[bench]')")
    return result


def _us(seconds):
    us = seconds * 1e6
    return f"{us:,.1f} us" if us < 1000 else f"{us / 1000:,.2f} ms"


def sgd_step(X, y, rounds, notes):
    """Per-row seconds of batch-1 SGD epochs over dense rows, interleaved."""
    torch = optional("torch")
    tpc = optional("threadpoolctl")
    net = Network(SIZES, seed=0)
    ref = ReferenceNetwork(SIZES, "relu", "softmax", "float32", seed=0)
    systems = {"cmlp float32": lambda: net.fit(X, y, epochs=1, batch_size=1, lr=SGD_LR,
                                                shuffle=False, verbose=0).seconds[0]}
    systems["NumPy reference"] = lambda: _timed(lambda: ref.fit(X, y, epochs=1, batch_size=1,
                                                                lr=SGD_LR))
    if torch is not None:
        model = torch_model(Network(SIZES, seed=0))
        optimizer = torch.optim.SGD(model.parameters(), lr=SGD_LR)
        loss_fn = torch.nn.CrossEntropyLoss()
        X_t, y_t = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))

        def torch_epoch():
            for i in range(len(X_t)):
                optimizer.zero_grad(set_to_none=True)
                loss_fn(model(X_t[i:i + 1]), y_t[i:i + 1]).backward()
                optimizer.step()
        systems["PyTorch CPU"] = lambda: _timed(torch_epoch)
    times = {name: [] for name in systems}
    if torch is not None:
        torch.set_num_threads(1)
    with tpc.threadpool_limits(1):
        for fn in systems.values():
            fn()                                          # warm-up
        for _ in range(rounds):
            for name, fn in systems.items():
                times[name].append(fn() / len(X))
    result = {name: {"median_s": statistics.median(t), "rounds_s": t,
                     "cmlp_over_system": paired(times, name)} for name, t in times.items()}
    print(f"\nBatch-1 SGD step, {len(X)} dense rows, lr {SGD_LR}, BLAS 1 thread: median per row")
    print(markdown_table(["system", "per step", "cmlp / system"],
                         [[name, _us(c["median_s"]), f"{c['cmlp_over_system']:.2f}×"]
                          for name, c in result.items()]))
    return result


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def throughput(fn, X, n_threads, seconds):
    """Samples per second from n_threads threads each calling fn(X) for `seconds`."""
    counts = [0] * n_threads
    barrier = threading.Barrier(n_threads + 1)

    def work(slot):
        barrier.wait()
        calls = 0
        while time.perf_counter() < stop:
            fn(X)
            calls += 1
        counts[slot] = calls * len(X)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    start = time.perf_counter()
    stop = start + seconds          # read by the workers once the barrier opens
    barrier.wait()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing loops")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds per cell")
    parser.add_argument("--data", help="MNIST directory (default $CMLP_DATA or ../shared)")
    parser.add_argument("--results-dir", help="where to write the JSON (default bench/results)")
    parser.add_argument("--busy", action="store_true",
                        help="also time batched calls beside a CPU-bound process")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if optional("threadpoolctl") is None:
        print("bench_predict needs threadpoolctl to pin BLAS threads: pip install '.[bench]'")
        return 2
    budget = 0.02 if args.smoke else (0.15 if args.quick else 0.35)   # seconds per cell
    rounds = 2 if args.smoke else args.rounds
    seconds = budget / rounds
    notes = []

    X_train, y_train, X_test, _, source = load_data(args.data, smoke=args.smoke)
    net = Network(SIZES, seed=0)
    net.fit(X_train[:5000], y_train[:5000], epochs=1, verbose=0)     # realistic weights
    ref = ReferenceNetwork(SIZES, seed=0)
    ref.weights = [W.copy() for W in net.weights]
    ref.biases = [b.copy() for b in net.biases]

    rng = np.random.default_rng(0)
    dense_rows = [1, 8, 32] if args.smoke else DENSE_ROWS
    mnist_rows = [n for n in ([1, 32] if args.smoke else MNIST_ROWS) if n <= len(X_test)]
    dense = rng.standard_normal((max(dense_rows), SIZES[0])).astype(np.float32)
    inputs = {"Dense rows": {n: np.ascontiguousarray(dense[:n]) for n in dense_rows},
              f"{source} test rows": {n: np.ascontiguousarray(X_test[:n]) for n in mnist_rows}}
    latency = latency_tables(net, ref, inputs, rounds, seconds, 0.0 if args.smoke else 0.15, notes)

    sgd_n = 100 if args.smoke else SGD_ROWS
    X_sgd = rng.standard_normal((sgd_n, SIZES[0])).astype(np.float32)
    y_sgd = rng.integers(0, SIZES[-1], sgd_n)
    step = sgd_step(X_sgd, y_sgd, 3 if args.smoke else 5, notes)

    busy = busy_table(net, dense, rounds, seconds, notes) if args.busy else {}

    tpc = optional("threadpoolctl")
    scaling = {}
    tp_seconds = 0.2 if args.smoke else (1.0 if args.quick else 2.0)
    with tpc.threadpool_limits(1):
        for batch in (1, 256):
            X = np.ascontiguousarray(dense[:batch]) if batch <= len(dense) else dense
            one = throughput(net.predict_proba, X, 1, tp_seconds)
            two = throughput(net.predict_proba, X, 2, tp_seconds)
            scaling[batch] = {"1 thread": one, "2 threads": two, "speedup": two / one}
    print("\nThroughput of cmlp predict_proba on one shared network (dense rows), BLAS 1 thread")
    print(markdown_table(["samples per call", "1 thread", "2 threads", "speedup"],
                         [[b, f"{s['1 thread']:,.0f}/s", f"{s['2 threads']:,.0f}/s",
                           f"{s['speedup']:.2f}×"] for b, s in scaling.items()]))
    for note in notes:
        print(note)
    ort = optional("onnxruntime")
    path = write_json("predict", {
        "settings": {"sizes": SIZES, "data": source, "rounds": rounds,
                     "seconds_per_measurement": seconds, "threads": THREADS,
                     "onnxruntime": ort.__version__ if ort else None},
        "latency": {str(t): {label: {str(r): cell for r, cell in by_rows.items()}
                             for label, by_rows in tables.items()}
                    for t, tables in latency.items()},
        "sgd_step_dense": step,
        "throughput_samples_per_s": {str(b): s for b, s in scaling.items()},
        "busy": {str(r): cells for r, cells in busy.items()},
        "notes": notes}, args.results_dir)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
