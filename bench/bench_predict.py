"""Prediction speed: latency vs NumPy and PyTorch, and throughput from threads.

    python bench/bench_predict.py [--quick] [--data DIR]

Latency: the median time of one call computing class probabilities for 1, 32
and 10,000 MNIST test samples with 784-128-64-10 ReLU in float32: cmlp's
`predict_proba`, the NumPy reference's `forward`, and PyTorch's module under
`inference_mode` (+ softmax). Each figure is the median over 5 rounds of a
timed loop. A row with a dense random input shows cmlp without the benefit of
MNIST's zero pixels, which its one-row kernel skips.

Throughput: samples per second from 1 and from 2 Python threads calling
`predict_proba` on ONE shared network, with BLAS limited to 1 thread
(threadpoolctl) so that the threads, not BLAS, supply the parallelism.

Prints Markdown tables and writes JSON under bench/results/.
"""
import argparse
import statistics
import sys
import threading
import time

import numpy as np

from cmlp import Network
from cmlp.reference import ReferenceNetwork

from _common import load_data, markdown_table, optional, write_json

SIZES = [784, 128, 64, 10]


def per_call(fn, budget):
    """Median seconds per call over 5 rounds, each about budget/5 seconds long."""
    fn()
    start = time.perf_counter()
    calls = 0
    while time.perf_counter() - start < 0.02:
        fn()
        calls += 1
    loops = max(1, int(calls * budget / 5 / 0.02))
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        rounds.append((time.perf_counter() - start) / loops)
    return statistics.median(rounds)


def torch_forward(net):
    torch = optional("torch")
    if torch is None:
        return None
    layers = []
    for i, (W, b) in enumerate(zip(net.weights, net.biases)):
        linear = torch.nn.Linear(*W.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W.T.copy()))
            linear.bias.copy_(torch.from_numpy(b.copy()))
        layers.append(linear)
        if i < len(net.weights) - 1:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers).eval()

    def forward(X):
        with torch.inference_mode():
            return torch.softmax(model(torch.from_numpy(X)), dim=1).numpy()
    return forward


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
    parser.add_argument("--data", help="MNIST directory (default $CMLP_DATA or ../shared)")
    parser.add_argument("--results-dir", help="where to write the JSON (default bench/results)")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    budget = 0.05 if args.smoke else (0.5 if args.quick else 1.5)
    seconds = 0.2 if args.smoke else (1.0 if args.quick else 3.0)

    X_train, y_train, X_test, _, source = load_data(args.data, smoke=args.smoke)
    net = Network(SIZES, seed=0)
    net.fit(X_train[:5000], y_train[:5000], epochs=1, verbose=0)     # realistic weights
    ref = ReferenceNetwork(SIZES, seed=0)
    ref.weights = [W.copy() for W in net.weights]
    ref.biases = [b.copy() for b in net.biases]
    torch_fn = torch_forward(net)
    dense = np.random.default_rng(0).random((1, 784)).astype(np.float32)

    sizes = [n for n in (1, 32, 10000) if n <= len(X_test)]
    contenders = [("cmlp float32", net.predict_proba), ("NumPy reference", ref.forward)]
    if torch_fn is not None:
        contenders.append(("PyTorch CPU", torch_fn))
    inputs = {n: np.ascontiguousarray(X_test[:n]) for n in sizes}
    latency = {name: {n: per_call(lambda f=fn, X=inputs[n]: f(X), budget)
                      for n in sizes} for name, fn in contenders}
    latency["cmlp float32, dense random input"] = {1: per_call(lambda: net.predict_proba(dense), budget)}
    for name, fn in contenders[1:]:
        latency[name + ", dense random input"] = {1: per_call(lambda f=fn: f(dense), budget)}

    base = latency["cmlp float32"]
    rows = []
    for name, cells in latency.items():
        row = [name]
        for n in sizes:
            if n in cells:
                us = cells[n] * 1e6
                ratio = cells[n] / (base[n] if "dense" not in name else
                                    latency["cmlp float32, dense random input"][1])
                row.append(f"{us:,.1f} us · {ratio:.2f}× cmlp")
            else:
                row.append("")
        rows.append(row)
    print(f"Latency per call, {source} test samples, {SIZES} ReLU, float32 (median)")
    print(markdown_table(["system"] + [f"{n} sample" + ("s" if n > 1 else "") for n in sizes], rows))

    tpc = optional("threadpoolctl")
    scaling = {}
    if tpc is None:
        print("throughput: skipped, threadpoolctl is not installed (pip install '.[bench]')")
    else:
        if optional("torch") is not None:
            optional("torch").set_num_threads(1)
        with tpc.threadpool_limits(1):
            for batch in (1, 256):
                X = np.ascontiguousarray(X_test[:batch])
                one = throughput(net.predict_proba, X, 1, seconds)
                two = throughput(net.predict_proba, X, 2, seconds)
                scaling[batch] = {"1 thread": one, "2 threads": two, "speedup": two / one}
        print("\nThroughput of cmlp predict_proba on one shared network, BLAS 1 thread")
        print(markdown_table(["samples per call", "1 thread", "2 threads", "speedup"],
                             [[b, f"{s['1 thread']:,.0f}/s", f"{s['2 threads']:,.0f}/s",
                               f"{s['speedup']:.2f}×"] for b, s in scaling.items()]))
    path = write_json("predict", {
        "settings": {"sizes": SIZES, "data": source, "budget_s": budget},
        "latency_s": {name: {str(n): v for n, v in cells.items()} for name, cells in latency.items()},
        "throughput_samples_per_s": {str(b): s for b, s in scaling.items()}}, args.results_dir)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
