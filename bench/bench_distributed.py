"""Data-parallel training over MPI: samples per second, allreduce time, scaling.

    python bench/bench_distributed.py [--rounds N] [--rows N] [--data DIR] [--smoke]

Compares, side by side on the same machine, one SGD epoch of
`Network.fit` on MNIST rows (or random rows with --smoke) for:

* 1 process, 1 BLAS thread            (OPENBLAS_NUM_THREADS=1)
* 1 process, 2 BLAS threads           (OPENBLAS_NUM_THREADS=2)
* 2 MPI ranks, 1 BLAS thread each     (mpiexec -n 2, fit(comm=))

for 784-128-64-10 and 784-512-256-10 at global batches 128, 512 and 2048.
Each configuration is a fresh process (or job) per round, and the rounds
take turns, so the machine's noise falls on all of them alike; a figure is
the median over rounds of each round's median epoch. In the MPI job, the
time each step spends in the gradient hook (cmlp's sum of the ranks'
gradients: shared memory between ranks on one host, see
cmlp.distributed.GradientReducer; it includes waiting for the slower
rank) is measured too, and MPI's own Allreduce of a buffer of that size.

Scaling efficiency = (2-rank samples/s) / (2 x 1-process-1-thread samples/s).

--hosts (root): the 2 ranks on 2 "hosts" instead, network namespaces on a
bridge (tests/cluster.py) with TCP between them, over an unshaped link
(a veth: a memory copy), then links shaped to 10 Gbit/s and 1 Gbit/s (tc
tbf), each beside docs/guide/scaling.md's step-time model for the same
case: T1(B) / 2 + c * S + S / bandwidth + 2 * latency (one rank a host, so
no shared-memory sum), T1 the 1-process 1-thread step of the same run. The
bytes rank 0's host sent per step are read from its link's counter.

Needs the mpi extra (mpi4py + mpich). Prints a Markdown table and writes
JSON under bench/results/.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from _common import load_data, markdown_table, write_json

NETS = {"784-128-64-10": [784, 128, 64, 10], "784-512-256-10": [784, 512, 256, 10]}
BATCHES = [128, 512, 2048]
CONFIGS = [("1 process x 1 thread", 1, 1), ("1 process x 2 threads", 1, 2),
           ("2 ranks x 1 thread", 2, 1)]


def worker(args):
    """One configuration: print one JSON line of epoch times per (net, batch)."""
    comm = None
    if args.mpi:
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
    from cmlp import Network, distributed
    X, y, _, _, _ = load_data(args.data, smoke=args.smoke)
    X, y = np.ascontiguousarray(X[:args.rows], dtype=np.float32), y[:args.rows]
    hook_seconds = []
    if comm is not None:
        # Time the gradient hook (weighting + allreduce) step by step.
        plain_hook = distributed.DataParallelRun._hook

        def timed_hook(self, gradients, batch_weight):
            start = time.perf_counter()
            plain_hook(self, gradients, batch_weight)
            hook_seconds.append(time.perf_counter() - start)
        distributed.DataParallelRun._hook = timed_hook
    results = {}
    for name, sizes in NETS.items():
        for batch in BATCHES:
            net = Network(sizes, seed=0)
            kwargs = dict(batch_size=batch, optimizer="sgd", lr=0.01, verbose=0)
            if comm is not None:
                kwargs["comm"] = comm
            net.fit(X[:min(len(X), 4 * batch)], y[:min(len(X), 4 * batch)], epochs=1, **kwargs)
            del hook_seconds[:]
            sent = _link_bytes()
            history = net.fit(X, y, epochs=args.epochs, **kwargs)
            sent = _link_bytes() - sent
            steps = args.epochs * -(-len(X) // batch)
            cell = {"epoch_s": statistics.median(history.seconds), "rows": len(X)}
            if comm is not None:
                cell["hook_s_per_step"] = statistics.median(hook_seconds)
                buffer = np.zeros(net.parameters.size, dtype=np.float32)
                times = []
                for _ in range(30):
                    comm.Barrier()
                    start = time.perf_counter()
                    comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
                    times.append(time.perf_counter() - start)
                cell["allreduce_s"] = statistics.median(times)
                cell["steps"] = steps
                cell["link_bytes_per_step"] = sent / steps
            results[f"{name} {batch}"] = cell
    if comm is None or comm.rank == 0:
        print(json.dumps(results), flush=True)


def _link_bytes():
    """Bytes this host sent over its cluster link so far (0 outside one)."""
    iface = os.environ.get("CMLP_BENCH_IFACE")
    if not iface:
        return 0
    with open(f"/sys/class/net/{iface}/statistics/tx_bytes") as f:
        return int(f.read())


def worker_command(args):
    command = [sys.executable, os.path.abspath(__file__), "--worker", "--rows", str(args.rows),
               "--epochs", str(args.epochs)]
    if args.smoke:
        command.append("--smoke")
    if args.data:
        command += ["--data", args.data]
    return command


def run_config(args, ranks, threads):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    command = worker_command(args)
    if ranks > 1:
        mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
        command = [mpiexec, "-n", str(ranks), *command, "--mpi"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=20480, help="training rows per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per round")
    parser.add_argument("--data", default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny random data, 1 round")
    parser.add_argument("--results-dir", default=None)
    parser.add_argument("--hosts", action="store_true",
                        help="2 ranks on 2 namespace hosts over unshaped, 10 and 1 Gbit/s "
                             "links, against the scaling model (root)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mpi", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.rows, args.epochs = 1, 500, 1
    if args.worker:
        return worker(args)
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        raise SystemExit('bench_distributed needs the mpi extra: pip install "cmlp[mpi]"') \
            from None

    if args.hosts:
        from _hosts import hosts_main
        return hosts_main(args, run_config, worker_command)
    rounds = {name: [] for name, _, _ in CONFIGS}
    for _ in range(args.rounds):
        for name, ranks, threads in CONFIGS:
            rounds[name].append(run_config(args, ranks, threads))
    keys = list(rounds[CONFIGS[0][0]][0])
    results, rows = {}, []
    for key in keys:
        cell = {}
        for name, _, _ in CONFIGS:
            epochs = [r[key]["epoch_s"] for r in rounds[name]]
            cell[name] = {"samples_per_s": rounds[name][0][key]["rows"] / statistics.median(epochs),
                          "epoch_s": epochs}
        mpi_cells = [r[key] for r in rounds["2 ranks x 1 thread"]]
        hook = statistics.median(c["hook_s_per_step"] for c in mpi_cells)
        allreduce = statistics.median(c["allreduce_s"] for c in mpi_cells)
        step = statistics.median(c["epoch_s"] / c["steps"] * args.epochs for c in mpi_cells)
        one = cell["1 process x 1 thread"]["samples_per_s"]
        two = cell["2 ranks x 1 thread"]["samples_per_s"]
        cell.update(speedup=two / one, efficiency=two / (2 * one), hook_s_per_step=hook,
                    allreduce_s=allreduce, step_s=step)
        results[key] = cell
        net, batch = key.rsplit(" ", 1)
        rows.append([net, batch, *(f"{cell[name]['samples_per_s']:,.0f}" for name, _, _ in CONFIGS),
                     f"{two / one:.2f}x", f"{two / (2 * one):.0%}",
                     f"{hook * 1e3:.2f} ms ({hook / step:.0%})", f"{allreduce * 1e3:.2f} ms"])
    header = ["net", "global batch", *(f"{name} (samples/s)" for name, _, _ in CONFIGS),
              "2 ranks / 1x1", "efficiency", "gradient sum per step (% of step)",
              "MPI Allreduce of that buffer alone"]
    print(f"{args.rows} rows per epoch, median of {args.rounds} rounds x {args.epochs} epochs, "
          "SGD, float32")
    print(markdown_table(header, rows))
    path = write_json("distributed", {"rows": args.rows, "rounds": args.rounds,
                                      "epochs": args.epochs, "results": results},
                      args.results_dir)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
