"""What the gradient hook costs per batch.

    python bench/bench_hook.py [--repeats N] [--data DIR] [--smoke]

Trains 784-128-64-10 ReLU on MNIST with SGD + momentum 0.9 (a step that
needs the gradient buffer either way, so the only difference is the hook),
one epoch per run, with and without a no-op `gradient_hook`, the two taking
turns run by run. The per-batch cost is the median over runs of
(epoch with hook - epoch without) / batches. Also a hook that calls
numpy.multiply in place (what a real reduction's bookkeeping looks like).
Prints a Markdown table and writes JSON under bench/results/.
"""
import argparse
import statistics

import numpy as np

from cmlp import Network

from _common import load_data, markdown_table, write_json

SIZES = [784, 128, 64, 10]
BATCHES = [1, 32, 128]


def noop(gradients, batch_weight):
    pass


def scale(gradients, batch_weight):
    np.multiply(gradients, 1.0, out=gradients)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--data", default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny random data, 1 repeat")
    parser.add_argument("--results-dir", default=None)
    args = parser.parse_args()
    X, y, _, _, source = load_data(args.data, smoke=args.smoke)
    repeats = 1 if args.smoke else args.repeats
    hooks = {"no hook": None, "no-op hook": noop, "in-place multiply hook": scale}
    rows, results = [], {}
    for batch in BATCHES:
        n = min(X.shape[0], 6000 if batch == 1 else 60000)
        nets = {name: Network(SIZES, seed=0) for name in hooks}
        times = {name: [] for name in hooks}
        for _ in range(repeats + 1):                   # the first round warms up
            for name, hook in hooks.items():
                history = nets[name].fit(X[:n], y[:n], epochs=1, batch_size=batch,
                                         optimizer="momentum", lr=0.01, gradient_hook=hook,
                                         verbose=0)
                times[name].append(history.seconds[0])
        batches = -(-n // batch)
        row = [f"batch {batch} ({batches} batches)"]
        results[batch] = {}
        for name in hooks:
            epoch = statistics.median(times[name][1:])
            extra = statistics.median(
                [(t - t0) / batches * 1e6 for t, t0 in zip(times[name][1:], times["no hook"][1:])])
            results[batch][name] = {"epoch_s": epoch, "per_batch_extra_us": extra}
            row.append(f"{epoch:.3f} s" + ("" if hooks[name] is None else f" · {extra:+.2f} us/batch"))
        rows.append(row)
    print(f"Gradient hook cost, {source} {SIZES}, momentum SGD, median over {repeats} interleaved runs")
    print(markdown_table(["batch", *hooks], rows))
    path = write_json("hook", {"settings": {"sizes": SIZES, "repeats": repeats, "data": source},
                               "results": {str(b): r for b, r in results.items()}}, args.results_dir)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
