"""bench_distributed.py --hosts: 2 ranks on 2 namespace hosts (tests/cluster.py)
over unshaped and shaped links, beside docs/guide/scaling.md's model."""
import json
import os
import statistics
import sys

from _common import markdown_table, write_json

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests"))
import cluster as cluster_module  # noqa: E402 -- tests/cluster.py, found above

LINKS = [("unshaped", None), ("10 Gbit/s", "10gbit"), ("1 Gbit/s", "1gbit")]
# docs/guide/scaling.md's constants: the separate optimizer step, c * S,
# measured 0.46 ms for the 2.14 MB buffer of 784-512-256-10; 20 us a message.
STEP_SECONDS_PER_BYTE = 0.46e-3 / 2.14e6
LATENCY = 20e-6
PARAMETERS = {"784-128-64-10": 109_386, "784-512-256-10": 535_818}


def model_link(net, rate):
    """t_link(2) for the float32 gradient (and its flag): S / bandwidth + 2
    latencies; rate None (a veth): the latency term alone."""
    size = 4 * (PARAMETERS[net] + 1)
    return 2 * LATENCY + (size / (cluster_module.rate_bits(rate) / 8) if rate else 0.0)


def model_step(t1, net, rate):
    """The model's step time for 2 ranks, one per host (no shared-memory
    sum), float32."""
    return t1 / 2 + STEP_SECONDS_PER_BYTE * 4 * (PARAMETERS[net] + 1) + model_link(net, rate)


def run_on_hosts(args, rate, worker_command):
    with cluster_module.Cluster(hosts=2, rate=rate) as cluster:
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
               "CMLP_BENCH_IFACE": cluster_module.IFACE}
        result = cluster.mpiexec(2, [*worker_command(args), "--mpi"], ppn=1, env=env,
                                 timeout=3600)
    if result.returncode != 0:
        raise SystemExit(f"the 2-host job failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def hosts_main(args, run_config, worker_command):
    ok, why = cluster_module.available()
    if not ok:
        raise SystemExit(f"--hosts builds namespace hosts: {why}")
    one = []
    jobs = {name: [] for name, _ in LINKS}
    for _ in range(args.rounds):
        one.append(run_config(args, 1, 1))
        for name, rate in LINKS:
            jobs[name].append(run_on_hosts(args, rate, worker_command))
    results, rows = {}, []
    for key in one[0]:
        net, batch = key.rsplit(" ", 1)
        steps = -(-one[0][key]["rows"] // int(batch))
        t1 = statistics.median(r[key]["epoch_s"] for r in one) / steps
        for name, rate in LINKS:
            cells = [job[key] for job in jobs[name]]
            step = statistics.median(c["epoch_s"] for c in cells) / steps
            sent = statistics.median(c["link_bytes_per_step"] for c in cells)
            allreduce = statistics.median(c["allreduce_s"] for c in cells)
            model = model_step(t1, net, rate)
            link = model_link(net, rate)
            results[f"{key} {name}"] = {"step_s": step, "model_step_s": model, "t1_step_s": t1,
                                        "link_bytes_per_step": sent, "allreduce_s": allreduce,
                                        "model_link_s": link}
            rows.append([net, batch, name, f"{t1 * 1e3:.2f} ms",
                         f"{model * 1e3:.2f} ms, {int(batch) / model / 1e3:.1f}k/s",
                         f"{step * 1e3:.2f} ms, {int(batch) / step / 1e3:.1f}k/s",
                         f"{step / model - 1:+.0%}", f"{link * 1e3:.2f} ms",
                         f"{allreduce * 1e3:.2f} ms", f"{sent / 1e6:.2f} MB"])
    print(f"2 hosts x 1 rank x 1 BLAS thread, TCP (UCX_TLS=tcp,self); {args.rows} rows per "
          f"epoch, median of {args.rounds} rounds x {args.epochs} epochs, SGD, float32")
    print(markdown_table(["net", "global batch", "link", "1 process step (T1)",
                          "model (step, samples/s)", "measured (step, samples/s)",
                          "measured vs model", "model's t_link", "MPI Allreduce alone",
                          "sent per step (rank 0's host)"], rows))
    path = write_json("distributed_hosts", {"rows": args.rows, "rounds": args.rounds,
                                            "epochs": args.epochs, "results": results},
                      args.results_dir)
    print(f"wrote {path}")
